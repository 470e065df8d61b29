import { defineJobType } from '../defineJobType.js';

/** Built-in job type `sleep`: waits `ms` milliseconds (reporting progress), stops early when aborted. */
export default defineJobType({
  name: 'sleep',
  description: 'Waits ms milliseconds (progress every second from 2 s on); stops early when aborted.',
  // Built on first use, with the zod it is given: an isolated child running this type never loads zod.
  schemas: (z) => ({
    input: z
      .strictObject({
        ms: z
          .number({ error: 'must be a number of milliseconds' })
          .min(0, { error: 'must be a number of milliseconds >= 0' })
          .max(2_147_483_647, { error: 'must be at most 2147483647 ms (about 24.8 days)' })
          .default(1000)
          .describe('how long to wait, ms'),
      })
      .nullable()
      .transform((v) => v ?? { ms: 1000 }),
    output: z.strictObject({ sleptMs: z.number().min(0) }),
  }),
  handler: async ({ ms }, ctx) => {
    const started = Date.now();
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(done, ms);
      const tick =
        ms >= 2000
          ? setInterval(() => ctx.progress(Math.round(((Date.now() - started) / ms) * 100)), 1000)
          : null;
      function done(): void {
        if (tick) clearInterval(tick);
        ctx.signal.removeEventListener('abort', onAbort);
        resolve();
      }
      function onAbort(): void {
        clearTimeout(timer);
        if (tick) clearInterval(tick);
        reject(new Error('sleep aborted'));
      }
      ctx.signal.addEventListener('abort', onAbort, { once: true });
    });
    return { sleptMs: Date.now() - started };
  },
});
