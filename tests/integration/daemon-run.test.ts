import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enqueue, enqueueMany, eventsOf, get, listWorkers, unservedTypes } from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { builtinHandlerPath } from '../../src/jobs/registry.js';
import { fixtureHandler, recorder, startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

describe('daemon: running jobs', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('daemon_run');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });
  const now = () => new Date();

  it('runs built-in jobs to completion and registers itself', async () => {
    d = await startTestDaemon(f);
    const jobs = [
      ...Array.from({ length: 30 }, (_, i) => newJob('noop', { i }, {}, now())),
      newJob('echo', { hello: 'world' }, {}, now()),
      newJob('sleep', { ms: 20 }, {}, now()),
    ];
    const seen = recorder(d, 'job:completed');
    const ids = (await enqueueMany(f.store, jobs, now())).map((r) => r.job._id);
    await seen.waitAll(ids);
    for (const id of ids) expect((await get(f.store, id))?.state).toBe('completed');
    const echo = await get(f.store, ids[30]!);
    expect(echo?.result).toEqual({ hello: 'world' });
    expect((await eventsOf(f.store, ids[0]!)).map((e) => e.to)).toEqual(['queued', 'running', 'completed']);
    const workers = await listWorkers(f.store, { now: now(), leaseMs: 5_000 });
    expect(workers.find((w) => w._id === d!.workerId)).toMatchObject({
      state: 'running',
      dead: false,
      pid: process.pid,
    });
  });

  it('a job of a type this daemon does not run waits in queued, listed as unserved; other jobs run', async () => {
    d = await startTestDaemon(f);
    const claimed: string[] = [];
    d.on('job:claimed', (e) => claimed.push(e.jobId));
    const { job } = await enqueue(f.store, newJob('no-such-type', {}, { maxAttempts: 5 }, now()), now());
    const completed = d.events.waitFor('job:completed');
    // Enqueued after, at a lower priority: it runs, while the unknown one is never claimed.
    const ok = await enqueue(f.store, newJob('noop', {}, { priority: 9 }, now()), now());
    expect((await completed).jobId).toBe(ok.job._id);
    expect(claimed).toEqual([ok.job._id]);
    expect(await get(f.store, job._id)).toMatchObject({ state: 'queued', attempts: 0 });
    const workers = await listWorkers(f.store, { now: now(), leaseMs: 5_000 });
    expect(workers.find((w) => w._id === d!.workerId)?.types).toEqual(
      expect.arrayContaining(['noop', 'echo', 'sleep', 'fail']),
    );
    expect(await unservedTypes(f.store, { now: now(), leaseMs: 5_000 })).toEqual([
      { type: 'no-such-type', queued: 1, retrying: 0 },
    ]);
  });

  it("a failed attempt's retry waits at least the policy's lower bound after the failure, and is not claimed before", async () => {
    // Jitter 0.5 on a 1.5 s base: the first retry waits between 750 and 1500 ms, drawn at random.
    const retry = { baseMs: 1_500, factor: 2, capMs: 10_000, jitter: 0.5 };
    d = await startTestDaemon(
      f,
      { jobTypes: { flaky: { handler: builtinHandlerPath('fail'), maxAttempts: 2, retry } } },
      Math.random,
    );
    const retrying = d.events.waitFor('job:retrying');
    const failed = d.events.waitFor('job:failed');
    const { job } = await enqueue(f.store, newJob('flaky', { message: 'boom' }, {}, now()), now());
    const r = await retrying;
    const afterFirst = await get(f.store, job._id);
    expect(afterFirst).toMatchObject({ state: 'retrying', attempts: 1 });
    const failedAt = afterFirst!.lastError!.at.getTime();
    const runAt = afterFirst!.runAt.getTime();
    // What is stored is what was reported, and within the policy's bounds.
    expect(runAt).toBe(r.runAt.getTime());
    expect(runAt - failedAt).toBe(r.delayMs);
    expect(runAt - failedAt).toBeGreaterThanOrEqual(retry.baseMs * (1 - retry.jitter));
    expect(runAt - failedAt).toBeLessThanOrEqual(retry.baseMs);
    await failed;
    // The second attempt was claimed no earlier than runAt.
    const history = await eventsOf(f.store, job._id);
    const secondClaim = history.find((e) => e.to === 'running' && e.attempt === 2)!;
    expect(secondClaim.at.getTime()).toBeGreaterThanOrEqual(runAt);
    expect((await get(f.store, job._id))?.startedAt?.getTime()).toBeGreaterThanOrEqual(runAt);
  });

  it('DoNotRetryError fails the job at once', async () => {
    d = await startTestDaemon(f);
    const failed = d.events.waitFor('job:failed');
    const { job } = await enqueue(
      f.store,
      newJob('fail', { message: 'bad input', doNotRetry: true }, { maxAttempts: 5 }, now()),
      now(),
    );
    const ev = await failed;
    expect(ev.jobId).toBe(job._id);
    const doc = await get(f.store, job._id);
    expect(doc).toMatchObject({
      state: 'failed',
      attempts: 1,
      lastError: { name: 'DoNotRetryError', code: 'JOBD_DO_NOT_RETRY', message: 'bad input' },
    });
  });

  // Each attempt starts a fresh child (a timed-out one is never reused), and the timeout counts from
  // when the job is handed to the child: it leaves a loaded machine room to start one.
  it(
    'a job past its timeout is killed, retried with growing delays, then fails with a timeout error',
    { timeout: 120_000 },
    async () => {
      mkdirSync(join(process.cwd(), '.tmp'), { recursive: true });
      const pidFile = `${f.t.dbName}.pids`;
      d = await startTestDaemon(f, {
        // A lease no starved heartbeat can lose: each attempt must end by its timeout, not a rescue.
        worker: { leaseMs: 60_000 },
        jobTypes: {
          hang: {
            handler: fixtureHandler('hang.mjs'),
            timeoutMs: 6_000,
            maxAttempts: 3,
            retry: { baseMs: 100, factor: 3, capMs: 10_000, jitter: 0 },
          },
        },
      });
      const delays: number[] = [];
      d.on('job:retrying', (e) => delays.push(e.delayMs));
      const failed = d.events.waitFor('job:failed');
      // The timeout leaves room for a fresh child to start (each timed-out child is killed, never reused).
      const { job } = await enqueue(
        f.store,
        newJob(
          'hang',
          { pidFile: join(process.cwd(), '.tmp', pidFile) },
          { maxAttempts: 3, timeoutMs: 6_000 },
          now(),
        ),
        now(),
      );
      const ev = await failed;
      expect(ev.jobId).toBe(job._id);
      expect(ev.error).toMatchObject({ name: 'JobTimeoutError', code: 'JOBD_TIMEOUT' });
      const doc = await get(f.store, job._id);
      expect({
        state: doc?.state,
        attempts: doc?.attempts,
        errors: doc?.errors.map((e) => e.code),
        delays,
      }).toEqual({
        state: 'failed',
        attempts: 3,
        errors: ['JOBD_TIMEOUT', 'JOBD_TIMEOUT', 'JOBD_TIMEOUT'],
        delays: [100, 300],
      });
      const pids = readFileSync(join(process.cwd(), '.tmp', pidFile), 'utf8')
        .trim()
        .split('\n')
        .map(Number);
      expect(pids).toHaveLength(3);
      for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    },
  );
  it('jobs claimed ahead of a free slot go back to queued, attempt given back, when the daemon stops', async () => {
    d = await startTestDaemon(f, { worker: { concurrency: 1, claimBatchSize: 10 } });
    // Short jobs first, so the daemon knows its jobs are short and claims ahead.
    const warm = recorder(d, 'job:completed');
    const warmJobs = Array.from({ length: 60 }, () => newJob('noop', {}, {}, now()));
    const warmIds = (await enqueueMany(f.store, warmJobs, now())).map((r) => r.job._id);
    await warm.waitAll(warmIds);
    const started = new Set<string>();
    d.on('job:claimed', (e) => started.add(e.jobId));
    const slow = newJob('sleep', { ms: 10_000 }, { priority: 1 }, now());
    const ids = (
      await enqueueMany(
        f.store,
        [slow, ...Array.from({ length: 5 }, () => newJob('noop', {}, {}, now()))],
        now(),
      )
    ).map((r) => r.job._id);
    await d.events.waitFor('job:claimed', (e) => e.jobId === ids[0]);
    await d.stop({ graceMs: 0 });
    for (const id of ids) {
      const doc = await get(f.store, id);
      if (doc?.state === 'completed') continue;
      expect(doc).toMatchObject({ state: 'queued', attempts: 0, lease: null });
      // Never started: either never claimed, or claimed ahead and given back (how many depends on timing).
      if (!started.has(id))
        expect(['queued', 'queued,running,queued']).toContain(
          (await eventsOf(f.store, id)).map((e) => e.to).join(),
        );
    }
    expect(d.stats().requeued).toBe(1);
  });
});
