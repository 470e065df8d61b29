/**
 * Pooled children that hold several jobs (SandboxOptions.sharedChildren): one child, its handler
 * measured short, so the quick jobs of each case queue on it behind the first (a holds.ts job). Real processes throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, type RunOutcome, type Sandbox } from '../../src/sandbox/index.js';
import {
  completed,
  expectGone,
  failed,
  noHooks,
  request,
  runReportingPid,
  useSandboxes,
} from './sandboxHelpers.js';

useSandboxes();
const Q = 'quick.ts';
const H = 'holds.ts';
let s: Sandbox;

beforeAll(async () => {
  s = createSandbox({
    maxJobsPerChild: 1_000,
    maxRssBytes: 4 * 1024 ** 3,
    sampleIntervalMs: 20,
    killGraceMs: 300,
    maxChildren: 4,
    sharedChildren: 1,
  });
  // Measured: the first job loads the module, the next ones show how short its jobs are.
  for (let i = 0; i < 3; i++) completed(await s.run(request(Q), noHooks));
});
afterAll(() => s.close());

const pidOf = (o: RunOutcome): number => (completed(o).output as { pid: number }).pid;

describe('a pooled child holding several jobs', () => {
  it('runs them in one child, one after another; a queued job is timed from its start, not from its hand-over', async () => {
    // The queued jobs' timeouts are shorter than the wait behind the first job.
    const first = s.run(request(H, { params: { ms: 600 } }), noHooks);
    const rest = [1, 2, 3].map(() => s.run(request(Q, { timeoutMs: 400 }), noHooks));
    const pids = (await Promise.all([first, ...rest])).map(pidOf);
    expect(new Set(pids).size).toBe(1);
  });

  it('a cancel of a queued job takes it out without killing the child; the running job and the next finish', async () => {
    const first = s.run(request(H, { params: { ms: 1_500 } }), noHooks);
    const ac = new AbortController();
    const cancelled = s.run(request(Q), { ...noHooks, signal: ac.signal });
    const after = s.run(request(Q), noHooks);
    let firstDone = false;
    void first.then(() => (firstDone = true));
    ac.abort(new Error('cancelled by the test'));
    const c = failed(await cancelled);
    expect(c.reason).toBe('aborted');
    expect(firstDone).toBe(false);
    const [a, b] = await Promise.all([first, after]);
    expect(pidOf(a!)).toBe(pidOf(b!));
  });

  it('a job past its timeout kills the child; the jobs queued behind it are released, not timed out', async () => {
    const hang = runReportingPid(s, request(H, { params: { hang: true }, timeoutMs: 1_500 }));
    const queued = [1, 2, 3].map(() => s.run(request(Q, { timeoutMs: 300 }), noHooks));
    const pid = await hang.pid;
    const h = failed(await hang.outcome);
    expect(h.reason).toBe('timeout');
    for (const o of await Promise.all(queued)) expect(failed(o).reason).toBe('released');
    expectGone(pid);
    // A new child serves the next jobs.
    expect(pidOf(await s.run(request(Q), noHooks))).not.toBe(pid);
  });

  it('a SIGKILLed child fails its running job as a crash and releases the jobs queued behind it', async () => {
    const victim = runReportingPid(s, request(H, { params: { hang: true } }));
    const queued = [1, 2].map(() => s.run(request(Q), noHooks));
    process.kill(await victim.pid, 'SIGKILL');
    const v = failed(await victim.outcome);
    expect(v.reason).toBe('crash');
    expect(v.signal).toBe('SIGKILL');
    for (const o of await Promise.all(queued)) expect(failed(o).reason).toBe('released');
  });

  it('a job that blocks the child: only it times out; the others complete or are released to run again', async () => {
    const before = [1, 2].map(() => s.run(request(Q), noHooks));
    const spin = s.run(request(Q, { params: { spin: true }, timeoutMs: 1_000 }), noHooks);
    const after = s.run(request(Q), noHooks);
    expect(failed(await spin).reason).toBe('timeout');
    // Results held back when the child blocked are lost with it: those jobs run again.
    for (const o of await Promise.all([...before, after])) {
      if (o.status === 'failed') expect(o.reason).toBe('released');
    }
  });
});
