/**
 * Queues on a running daemon: pause and resume (seen through the change stream, and through the
 * periodic re-read without one), worker.queues, per-queue concurrency, and cleaning a queue.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enqueue, enqueueMany, get, listWorkers } from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { builtinHandlerPath } from '../../src/jobs/registry.js';
import { cleanQueueJobs, pauseQueue, queueSummaries, resumeQueue } from '../../src/queueAdmin.js';
import { waitForCount } from '../helpers/waitFor.js';
import { fixtureHandler, recorder, startTestDaemon, testConfig } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

const now = () => new Date();
const echo = builtinHandlerPath('echo');
/** Types in two queues: a1, a2 in "alpha"; b1 in "beta"; echo stays in its own queue. */
const TYPES = {
  a1: { handler: echo, queue: 'alpha' },
  a2: { handler: echo, queue: 'alpha' },
  b1: { handler: echo, queue: 'beta' },
};

describe('daemon: queues', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('daemon_queues');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });

  for (const changeStreams of [true, false]) {
    it(`a paused queue is claimed by no running daemon, and is again after resume (change streams ${changeStreams ? 'on' : 'off'})`, async () => {
      d = await startTestDaemon(f, { jobTypes: TYPES, worker: { changeStreams, pollMaxMs: 300 } });
      const paused = d.events.waitFor('queues:paused', (p) => p.paused.includes('alpha'), {
        timeoutMs: 30_000,
      });
      await pauseQueue(f.store, 'alpha', { now: now(), by: 'test' });
      await paused;
      const held = await enqueue(f.store, newJob('a1', { n: 1 }, { priority: 1 }, now()), now());
      const completed = d.events.waitFor('job:completed', (p) => p.type === 'b1', { timeoutMs: 30_000 });
      // Enqueued after, at a lower priority: its completion proves claim rounds ran past the paused job.
      await enqueue(f.store, newJob('b1', {}, { priority: 9 }, now()), now());
      await completed;
      const roundAfter = d.events.waitFor('job:completed', (p) => p.type === 'echo', { timeoutMs: 30_000 });
      await enqueue(f.store, newJob('echo', {}, { priority: 9 }, now()), now());
      await roundAfter;
      expect(await get(f.store, held.job._id)).toMatchObject({ state: 'queued', attempts: 0 });
      const summary = await queueSummaries(f.store, testConfig(f, { jobTypes: TYPES }).jobTypes, {}, now());
      expect(summary.find((q) => q.name === 'alpha')).toMatchObject({
        paused: true,
        types: ['a1', 'a2'],
        counts: { queued: 1 },
      });
      expect(summary.find((q) => q.name === 'alpha')!.oldestQueuedAgeMs).toBeGreaterThanOrEqual(0);

      const done = d.events.waitFor('job:completed', (p) => p.jobId === held.job._id, { timeoutMs: 30_000 });
      await resumeQueue(f.store, 'alpha', { now: now() });
      await done;
    });
  }

  it('worker.queues limits what a daemon claims and registers', async () => {
    d = await startTestDaemon(f, { jobTypes: TYPES, worker: { queues: ['beta'] } });
    const other = await enqueue(f.store, newJob('a1', {}, { priority: 1 }, now()), now());
    const echoJob = await enqueue(f.store, newJob('echo', {}, { priority: 1 }, now()), now());
    const completed = d.events.waitFor('job:completed', (p) => p.type === 'b1', { timeoutMs: 30_000 });
    await enqueue(f.store, newJob('b1', {}, { priority: 9 }, now()), now());
    await completed;
    expect(await get(f.store, other.job._id)).toMatchObject({ state: 'queued', attempts: 0 });
    expect(await get(f.store, echoJob.job._id)).toMatchObject({ state: 'queued', attempts: 0 });
    const workers = await listWorkers(f.store, { now: now(), leaseMs: 5_000 });
    expect(workers.find((w) => w._id === d!.workerId)?.types).toEqual(['b1']);
  });

  it('a queue with its own concurrency never runs more of its jobs at once, across its types', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobd-queue-gate-'));
    const gate = join(dir, 'open');
    // The handlers append "start"/"end" as they execute: what ran at once, not when events were seen
    // (a freed slot may be claimed again before the finished job's completion event is emitted).
    const trace = join(dir, 'trace');
    const gated = { handler: fixtureHandler('gate.mjs'), queue: 'slow' };
    d = await startTestDaemon(f, {
      jobTypes: { g1: gated, g2: gated },
      queues: { slow: { concurrency: 2 } },
      worker: { concurrency: 8, claimBatchSize: 10 },
    });
    const seen = recorder(d, 'job:completed');
    const ids = (
      await enqueueMany(
        f.store,
        Array.from({ length: 6 }, (_, i) => newJob(i % 2 ? 'g1' : 'g2', { file: gate, trace }, {}, now())),
        now(),
      )
    ).map((r) => r.job._id);
    await waitForCount(f.store.jobs, { state: 'running' }, 2);
    // Other work still flows while the queue is full, and the queue stays at its limit meanwhile.
    const echoIds = (await enqueueMany(f.store, [newJob('echo', {}, {}, now())], now())).map(
      (r) => r.job._id,
    );
    await seen.waitAll(echoIds);
    expect(await f.store.jobs.countDocuments({ state: 'running' })).toBe(2);
    expect(existsSync(gate)).toBe(false);
    writeFileSync(gate, '');
    await seen.waitAll(ids);
    const lines = readFileSync(trace, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(12);
    let running = 0;
    let most = 0;
    for (const line of lines) {
      running += line.startsWith('start ') ? 1 : -1;
      most = Math.max(most, running);
    }
    expect(most).toBe(2);
  });

  it('clean counts with a dry run, then deletes the jobs and their history', async () => {
    d = await startTestDaemon(f, { jobTypes: TYPES });
    const seen = recorder(d, 'job:completed');
    const ids = (
      await enqueueMany(
        f.store,
        [newJob('a1', {}, {}, now()), newJob('a2', {}, {}, now()), newJob('b1', {}, {}, now())],
        now(),
      )
    ).map((r) => r.job._id);
    await seen.waitAll(ids);
    const types = testConfig(f, { jobTypes: TYPES }).jobTypes;
    const dry = await cleanQueueJobs(f.store, types, 'alpha', { state: 'completed', dryRun: true });
    // A type named like the queue that these settings do not define would belong to it too.
    expect(dry).toMatchObject({
      queue: 'alpha',
      types: ['a1', 'a2', 'alpha'],
      jobs: 2,
      events: 0,
      dryRun: true,
    });
    expect(await f.store.jobs.countDocuments({})).toBe(3);
    const older = await cleanQueueJobs(f.store, types, 'alpha', {
      state: 'completed',
      before: new Date(now().getTime() - 3_600_000),
    });
    expect(older.jobs).toBe(0);
    const deleted: string[] = [];
    const res = await cleanQueueJobs(f.store, types, 'alpha', {
      state: 'completed',
      chunk: 1,
      onDeleted: (batch) => void deleted.push(...batch),
    });
    expect(res).toMatchObject({ jobs: 2, events: 6, dryRun: false });
    expect(deleted.sort()).toEqual([ids[0], ids[1]].sort());
    expect(await f.store.jobs.countDocuments({})).toBe(1);
    expect(await f.store.events.countDocuments({ jobId: { $in: [ids[0]!, ids[1]!] } })).toBe(0);
    expect(await f.store.events.countDocuments({ jobId: ids[2]! })).toBe(3);
  });
});
