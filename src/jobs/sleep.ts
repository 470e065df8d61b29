import type { JobContext } from '../types.js';

/** Built-in job type `sleep`: waits `ms` milliseconds (reporting progress), stops early when aborted. */
export default async function sleep(
  params: { ms?: unknown } | null,
  ctx: JobContext,
): Promise<{ sleptMs: number }> {
  const ms = Number(params?.ms ?? 1000);
  if (!Number.isFinite(ms) || ms < 0)
    throw new Error(`sleep: params.ms must be a number >= 0; got ${JSON.stringify(params?.ms)}`);
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
}
