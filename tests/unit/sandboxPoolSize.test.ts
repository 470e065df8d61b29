/**
 * How many pooled children short jobs get (SandboxOptions.sharedChildren): a handler that stalls now
 * and then still counts as short (its run time is the median of its recent runs, not a mean one stall
 * inflates), and children above the shared count that long jobs needed are retired once idle. Real
 * children throughout; the counts are polled with deadlines.
 */
import { describe, expect, it } from 'vitest';
import type { Sandbox } from '../../src/sandbox/index.js';
import { waitUntil } from '../helpers/waitFor.js';
import { completed, noHooks, request, sandbox, useSandboxes } from './sandboxHelpers.js';

useSandboxes();
// holds.ts returns its pid after params.ms.
const H = 'holds.ts';

/** Runs `jobs` jobs, `concurrency` at a time; `ms(i)` is job i's stall. The most children seen alive. */
async function load(
  s: Sandbox,
  jobs: number,
  concurrency: number,
  ms: (i: number) => number,
): Promise<number> {
  let next = 0;
  let most = s.stats().children;
  const watch = setInterval(() => (most = Math.max(most, s.stats().children)), 2);
  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < jobs) {
          const i = next++;
          completed(await s.run(request(H, { params: { ms: ms(i) } }), noHooks));
          most = Math.max(most, s.stats().children);
        }
      }),
    );
  } finally {
    clearInterval(watch);
  }
  return most;
}

const childrenAre = (s: Sandbox, n: number, what: string): Promise<true> =>
  waitUntil(() => s.stats().children === n, { what, timeoutMs: 30_000, intervalMs: 20 });

describe('the pool keeps short jobs on the shared children', () => {
  it('a handler that stalls every fourth job stays on the shared children, and the pool keeps its size after', async () => {
    const s = sandbox({ maxChildren: 8, sharedChildren: 2, maxJobsPerChild: 100_000 });
    // Measured: the first job loads the module, the next ones show how short its jobs are.
    for (let i = 0; i < 3; i++) completed(await s.run(request(H), noHooks));

    // Every fourth job stalls 250 ms: a mean of the run times would call the handler long (a quarter
    // of 250 ms is past the 50 ms a child's queue may hold) and start a child per waiting run, up to
    // the four runs at a time. Four at a time queue one run behind each shared child's running one,
    // which the median allows while it is under 50 ms: far above a short run's time even on a loaded
    // machine (with eight at a time each child would hold four, and a median past 12.5 ms, which a
    // busy machine's scheduling can make of a 0 ms run, already started children).
    const stalling = await load(s, 120, 4, (i) => (i % 4 === 3 ? 250 : 0));
    expect(stalling).toBeLessThanOrEqual(3);

    // Once the stalls stop, under load and after it, the pool is back at its shared size.
    await load(s, 120, 8, () => 0);
    await childrenAre(s, 2, 'the two shared children, extras retired');
    expect(s.stats()).toMatchObject({ children: 2, idle: 2 });
  }, 120_000);

  it('children long jobs needed above the shared count are retired once idle; short jobs keep one', async () => {
    const s = sandbox({ maxChildren: 6, sharedChildren: 1, maxJobsPerChild: 100_000 });
    // Measured long: each of four at once gets a child of its own.
    for (let i = 0; i < 2; i++) completed(await s.run(request(H, { params: { ms: 300 } }), noHooks));
    const most = await load(s, 4, 4, () => 300);
    expect(most).toBeGreaterThanOrEqual(3);

    await childrenAre(s, 1, 'the extras retired after their idle time');
    // The one left still serves (its pid is one of a live child).
    const o = completed(await s.run(request(H), noHooks));
    expect(typeof (o.output as { pid: number }).pid).toBe('number');
    expect(s.stats().children).toBe(1);
  }, 120_000);
});
