/**
 * The sandbox's bound on child processes (SandboxOptions.maxChildren), counted the way an operator
 * would: the live child processes of this process, read from /proc by a sampler on its own thread
 * (so a stalled event loop here does not stall the count), including children that are starting,
 * busy, idle, or on their way out.
 */
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import pidusage from 'pidusage';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunOutcome, Sandbox } from '../../src/sandbox/index.js';
import {
  completed,
  expectGone,
  failed,
  noHooks,
  request,
  runReportingPid,
  sandbox,
  useSandboxes,
} from './sandboxHelpers.js';

useSandboxes();

/**
 * Counts the sandbox's child processes of `pid` every millisecond: those running the child entry,
 * and node zombies (exited, not reaped yet). Other children of this process (pidusage runs
 * `getconf` once) are not the sandbox's.
 */
const SAMPLER = `
const { workerData } = require('node:worker_threads');
const { readFileSync } = require('node:fs');
const { pid, shared } = workerData;
const a = new Int32Array(shared); // [max, samples, stop]
const tick = new Int32Array(new SharedArrayBuffer(4));
const read = (f) => { try { return readFileSync(f, 'utf8'); } catch { return ''; } };
while (Atomics.load(a, 2) === 0) {
  let n = 0;
  for (const k of read('/proc/' + pid + '/task/' + pid + '/children').split(' ')) {
    if (!k) continue;
    if (read('/proc/' + k + '/cmdline').includes('childEntry.')) n++;
    else if (/^\\d+ \\(node\\) Z/.test(read('/proc/' + k + '/stat'))) n++;
  }
  if (n > a[0]) Atomics.store(a, 0, n);
  Atomics.add(a, 1, 1);
  Atomics.wait(tick, 0, 0, 1);
}
`;

interface Sampler {
  max(): number;
  samples(): number;
  stop(): Promise<void>;
}

const samplers: Sampler[] = [];
afterEach(async () => {
  await Promise.all(samplers.splice(0).map((s) => s.stop()));
});

async function startSampler(): Promise<Sampler> {
  // pidusage runs getconf on its first call; have that done before counting starts.
  await pidusage(process.pid);
  const shared = new SharedArrayBuffer(12);
  const a = new Int32Array(shared);
  const w = new Worker(SAMPLER, { eval: true, workerData: { pid: process.pid, shared } });
  const s: Sampler = {
    max: () => Atomics.load(a, 0),
    samples: () => Atomics.load(a, 1),
    stop: async () => {
      Atomics.store(a, 2, 1);
      await new Promise((r) => w.once('exit', r));
    },
  };
  samplers.push(s);
  // Resolve once it has taken a sample, so nothing happens before counting starts.
  return new Promise((resolve, reject) => {
    w.once('error', reject);
    const poll = setInterval(() => {
      if (s.samples() > 0) {
        clearInterval(poll);
        resolve(s);
      }
    }, 5);
  });
}

function childrenNow(): number {
  return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8').split(' ').filter(Boolean)
    .length;
}

/** Keeps this process's event loop busy for `ms`, like a daemon stopped and continued. */
function stallEventLoop(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}

function pidOf(o: RunOutcome): number | undefined {
  if (o.status !== 'completed') return undefined;
  const out = o.output as { pid?: unknown } | number;
  if (typeof out === 'number') return out;
  return typeof out?.pid === 'number' ? out.pid : undefined;
}

describe('the bound on child processes', () => {
  it('holds at every instant under churn: recycling, crashes, timeouts, memory kills, stalls, SIGSTOP/SIGCONT', async () => {
    const bound = 3;
    const sampler = await startSampler();
    // Every pooled child is recycled after each job, and `lingers` keeps it busy while it should leave.
    const s = sandbox({ maxChildren: bound, maxJobsPerChild: 1, killGraceMs: 2_000 });
    const statsSeen: number[] = [];
    const watchStats = setInterval(() => statsSeen.push(s.stats().children), 5);

    const mix: Array<() => Promise<RunOutcome>> = [
      () => s.run(request('lingers.ts', { params: { ms: 400 } }), noHooks),
      () => s.run(request('exits.ts', { params: { code: 5 } }), noHooks),
      () => s.run(request('hangs.ts', { timeoutMs: 2_500, killGraceMs: 300 }), noHooks),
      () =>
        s.run(
          request('memoryHog.ts', { memoryLimitBytes: 150 * 1024 * 1024, params: { capMb: 400 } }),
          noHooks,
        ),
      () => s.run(request('lingers.ts', { mode: 'isolated', params: { ms: 200 } }), noHooks),
      () => s.run(request('unhandledRejection.ts'), noHooks),
      () => s.run(request('ok.ts'), noHooks),
    ];
    const reasons = new Map<string, number>();
    // Three lanes of five jobs: between them, every kind of job in the mix.
    const lane = async (offset: number): Promise<void> => {
      for (let i = 0; i < 5; i++) {
        const o = await mix[(i + offset) % mix.length]!();
        const key = o.status === 'completed' ? 'completed' : o.reason;
        reasons.set(key, (reasons.get(key) ?? 0) + 1);
        const pid = pidOf(o);
        if (pid !== undefined && i % 2 === 0) {
          // A child asked to leave cannot act while stopped: it stays, dying, until continued.
          try {
            process.kill(pid, 'SIGSTOP');
            setTimeout(() => {
              try {
                process.kill(pid, 'SIGCONT');
              } catch {
                // already gone
              }
            }, 300);
          } catch {
            // already gone
          }
        }
        if (i === 2) stallEventLoop(300);
      }
    };
    await Promise.all([lane(0), lane(2), lane(4)]);
    clearInterval(watchStats);

    // The churn really happened.
    expect(reasons.get('crash')).toBeGreaterThanOrEqual(1);
    expect(reasons.get('timeout')).toBeGreaterThanOrEqual(1);
    expect(reasons.get('memory')).toBeGreaterThanOrEqual(1);
    expect(reasons.get('completed')).toBeGreaterThanOrEqual(5);
    expect(sampler.samples()).toBeGreaterThan(100);
    expect(sampler.max()).toBeGreaterThanOrEqual(2);
    // The bound.
    expect(sampler.max()).toBeLessThanOrEqual(bound);
    expect(Math.max(...statsSeen)).toBeLessThanOrEqual(bound);
    await s.close();
    expect(childrenNow()).toBe(0);
    // Fifteen fresh children on a loaded machine: well beyond the default test time.
  }, 300_000);

  it('an idle child of another kind is retired to make room; the new child starts after it is gone', async () => {
    const sampler = await startSampler();
    const s = sandbox({ maxChildren: 1, killGraceMs: 5_000 });
    const pooledPid = pidOf(completed(await s.run(request('ok.ts'), noHooks)))!;
    expect(s.stats()).toEqual({ children: 1, idle: 1, busy: 0 });
    const iso = completed(await s.run(request('ok.ts', { mode: 'isolated' }), noHooks));
    expect(pidOf(iso)).not.toBe(pooledPid);
    expectGone(pooledPid);
    expect(sampler.max()).toBe(1);
  });

  it('a run beyond the bound waits for a child to be free, then uses it', async () => {
    const s = sandbox({ maxChildren: 1 });
    const ac = new AbortController();
    const first = runReportingPid(s, request('sleepsUntilAborted.ts'), ac.signal);
    const busyPid = await first.pid;
    let secondDone = false;
    const second = s.run(request('ok.ts'), noHooks).finally(() => (secondDone = true));
    // The second run has no child: the only one is busy, and another would pass the bound.
    expect(s.stats()).toEqual({ children: 1, idle: 0, busy: 1 });
    expect(secondDone).toBe(false);
    ac.abort(new Error('done with it'));
    expect(failed(await first.outcome).reason).toBe('aborted');
    const o = completed(await second);
    expect(pidOf(o)).not.toBe(busyPid);
    expect(s.stats().children).toBe(1);
  });

  it('a run waiting for a child honours its timeout and its abort signal', async () => {
    const s: Sandbox = sandbox({ maxChildren: 1 });
    const holder = new AbortController();
    const first = runReportingPid(
      s,
      request('sleepsUntilAborted.ts', { timeoutMs: Infinity }),
      holder.signal,
    );
    await first.pid;

    const timedOut = failed(await s.run(request('ok.ts', { timeoutMs: 300 }), noHooks));
    expect(timedOut).toMatchObject({ reason: 'timeout', error: { code: 'JOBD_TIMEOUT' } });

    const ac = new AbortController();
    const waiting = s.run(request('ok.ts'), { onProgress() {}, signal: ac.signal });
    ac.abort(new Error('cancelled while waiting'));
    const aborted = failed(await waiting);
    expect(aborted).toMatchObject({ reason: 'aborted', error: { code: 'JOBD_ABORTED' } });
    expect(aborted.error.message).toContain('cancelled while waiting');

    // Neither started a child: the holder still runs, alone.
    expect(s.stats()).toEqual({ children: 1, idle: 0, busy: 1 });
    holder.abort();
    expect(failed(await first.outcome).reason).toBe('aborted');
    expect(completed(await s.run(request('ok.ts'), noHooks)).status).toBe('completed');
  });
});
