/**
 * What a job's claim and completion write into the job indexes, and what the read queries walk:
 * - the cleanup index is partial (only jobs with a finishedAt), and an unfinished job stores no
 *   finishedAt at all, so a claim never touches that index and a completion adds one entry;
 * - type_state is gone: its queries are served by `claim` {state, type};
 * - every query that walked `cleanup` or `type_state` is planned on `cleanup` or `claim` still, read from
 *   the commands the store functions send (command monitoring) and explained with executionStats;
 * - an upgrade from the older definitions rebuilds `cleanup` and drops `type_state`, once, idempotently.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandStartedEvent, Document } from 'mongodb';
import { ManualClock } from '../../src/clock.js';
import {
  claimNext,
  completeIfRunning,
  countByState,
  countListed,
  deleteFinishedBefore,
  deleteFinishedJobs,
  enqueueMany,
  ensureIndexes,
  failIfRunning,
  failureGroups,
  finishedSince,
  finishedTimeline,
  jobIndexProblems,
  list,
  openStore,
  perfByType,
  releaseAfter,
  retry,
  runningPerOwner,
  unservedTypes,
  type Store,
} from '../../src/store/index.js';
import { FINISHED_STATES } from '../../src/types.js';
import { newJob, openStoreFixture, TEST_TYPES, type StoreFixture } from '../integration/store-helpers.js';
import { indexNames } from '../helpers/plans.js';

const ctx = (now: Date) => ({ owner: 'w1', now, errorHistory: 3 });

describe('job indexes: what a transition writes, what the reads walk', () => {
  let f: StoreFixture;
  /** The same database through a client that reports the commands it sends. */
  let watched: Store;
  const sent: Document[] = [];
  const clock = new ManualClock(Date.UTC(2030, 0, 1));
  const start = clock.now();
  /** 12 completed, 4 failed, 3 running, 5 queued; types a and b. */
  const counts = { completed: 12, failed: 4, running: 3, queued: 5 };

  beforeAll(async () => {
    f = await openStoreFixture('index_writes');
    watched = await openStore({
      mongoUri: f.t.uri,
      database: f.t.dbName,
      monitorCommands: true,
      ensureIndexes: false,
    });
    watched.client.on('commandStarted', (e: CommandStartedEvent) => {
      const coll = e.command[e.commandName] as unknown;
      if (coll === 'jobs' && ['find', 'aggregate', 'delete'].includes(e.commandName)) sent.push(e.command);
    });
    const total = counts.completed + counts.failed + counts.running + counts.queued;
    await enqueueMany(
      f.store,
      Array.from({ length: total }, (_, i) => newJob(i % 2 ? 'a' : 'b', { i }, {}, start)),
      start,
    );
    for (let i = 0; i < counts.completed + counts.failed + counts.running; i++) {
      clock.advance(1000);
      const job = await claimNext(f.store, {
        types: TEST_TYPES,
        owner: 'w1',
        leaseMs: 600_000,
        now: clock.now(),
      });
      if (!job?.lease) throw new Error('nothing claimed');
      if (i >= counts.completed + counts.failed) continue;
      clock.advance(500);
      const s = { jobId: job._id, token: job.lease.token, attempt: 1, seq: job.seq };
      const done =
        i < counts.completed
          ? await completeIfRunning(f.store, { ...s, result: null }, ctx(clock.now()))
          : await failIfRunning(
              f.store,
              { ...s, error: { name: 'E', message: 'no', code: 'X' }, retryAt: null },
              ctx(clock.now()),
            );
      expect(done).toBe(true);
    }
  });

  afterAll(async () => {
    await watched?.close();
    await f?.close();
  });

  it('the cleanup index is partial on finishedAt; type_state is gone', async () => {
    const got = await f.store.jobs.listIndexes().toArray();
    expect(got.find((i) => i.name === 'cleanup')?.partialFilterExpression).toEqual({
      finishedAt: { $exists: true },
    });
    expect(got.some((i) => i.name === 'type_state')).toBe(false);
    expect(await jobIndexProblems(f.store)).toEqual({ missing: [], changed: [], retired: [] });
  });

  /** The explained plans of the jobs queries `run` sends (find as sent; an aggregate's leading $match). */
  async function plansOf(run: () => Promise<unknown>): Promise<{ filter: Document; plan: Document }[]> {
    sent.length = 0;
    await run();
    const out: { filter: Document; plan: Document }[] = [];
    for (const cmd of [...sent]) {
      let find: Document;
      if (cmd.find) {
        find = { find: 'jobs', filter: cmd.filter ?? {} };
        for (const k of ['sort', 'projection', 'limit', 'hint'] as const)
          if (cmd[k] !== undefined) find[k] = cmd[k];
      } else if (cmd.aggregate) {
        const first = (cmd.pipeline as Document[])[0];
        if (!first?.$match) continue;
        find = { find: 'jobs', filter: first.$match };
      } else {
        find = { find: 'jobs', filter: (cmd.deletes as Document[])[0]!.q };
      }
      const plan = await f.store.db.command({ explain: find, verbosity: 'executionStats' });
      out.push({ filter: find.filter as Document, plan });
    }
    return out;
  }

  const since = new Date(Date.UTC(2030, 0, 1));

  it.each([
    ['finishedSince', () => finishedSince(watched, since)],
    ['failureGroups', () => failureGroups(watched, { since })],
    ['perfByType', () => perfByType(watched, { since })],
    [
      'finishedTimeline',
      () =>
        finishedTimeline(watched, { since, until: new Date(since.getTime() + 3_600_000), bucketMs: 60_000 }),
    ],
    [
      'deleteFinishedJobs (dry run, batches of 5)',
      () =>
        deleteFinishedJobs(watched, {
          before: Object.fromEntries(FINISHED_STATES.map((s) => [s, new Date(since.getTime() + 3_600_000)])),
          batchSize: 5,
          dryRun: true,
        }),
    ],
  ])('%s walks the cleanup index, and only finished jobs', async (_name, run) => {
    const plans = await plansOf(run);
    expect(plans.length).toBeGreaterThan(0);
    for (const { filter, plan } of plans) {
      expect(indexNames(plan), JSON.stringify(filter)).toEqual(['cleanup']);
      // No queued or running job is met on the way.
      expect(plan.executionStats.totalDocsExamined).toBeLessThanOrEqual(counts.completed + counts.failed);
    }
  });

  it('perfByType of a type walks claim (state, type) or cleanup (state, finishedAt): finished jobs only', async () => {
    // Both bound it; which is cheaper depends on the data (MongoDB tries both), as before.
    const plans = await plansOf(() => perfByType(watched, { since, type: 'a' }));
    expect(plans.length).toBe(1);
    expect(['claim', 'cleanup']).toContain(indexNames(plans[0]!.plan)[0]);
    expect(plans[0]!.plan.executionStats.totalDocsExamined).toBeLessThanOrEqual(
      counts.completed + counts.failed,
    );
  });

  it('the finished-job queries still count right', async () => {
    expect(await finishedSince(f.store, since)).toEqual({
      completed: counts.completed,
      failed: counts.failed,
      cancelled: 0,
    });
    const perf = await perfByType(f.store, { since });
    expect(perf.reduce((n, r) => n + r.count, 0)).toBe(counts.completed + counts.failed);
    expect(perf.every((r) => r.runP50Ms === 500 && r.attemptsPerJob === 1)).toBe(true);
    const dry = await deleteFinishedJobs(f.store, {
      before: Object.fromEntries(FINISHED_STATES.map((s) => [s, new Date(since.getTime() + 3_600_000)])),
      batchSize: 5,
      dryRun: true,
    });
    expect(dry.byState).toEqual({ completed: counts.completed, failed: counts.failed });
  });

  it.each([
    ['countListed by type', () => countListed(watched, { type: 'a' })],
    ['countListed by types', () => countListed(watched, { type: ['a', 'b'] })],
    ['list by type', () => list(watched, { type: 'a', limit: 5 })],
    ['countByState of a type', () => countByState(watched, { type: 'a' })],
    ['unservedTypes', () => unservedTypes(watched, { now: clock.now(), leaseMs: 60_000 })],
    ['runningPerOwner', () => runningPerOwner(watched, 'a')],
  ])('%s walks the claim index', async (_name, run) => {
    const plans = await plansOf(run);
    expect(plans.length).toBeGreaterThan(0);
    for (const { filter, plan } of plans) expect(indexNames(plan), JSON.stringify(filter)).toEqual(['claim']);
  });

  it('counts by type name every state and still count every job', async () => {
    const total = counts.completed + counts.failed + counts.running + counts.queued;
    expect((await countListed(f.store, { type: 'a' })) + (await countListed(f.store, { type: 'b' }))).toBe(
      total,
    );
    const a = await countByState(f.store, { type: 'a' });
    const b = await countByState(f.store, { type: 'b' });
    const sum = Object.values(a).reduce((n, v) => n + v, 0) + Object.values(b).reduce((n, v) => n + v, 0);
    expect(sum).toBe(total);
    expect(a.completed + b.completed).toBe(counts.completed);
  });

  it('retention deletes through the cleanup index', async () => {
    const plans = await plansOf(() =>
      deleteFinishedBefore(watched, { before: new Date(0), states: ['cancelled'] }),
    );
    expect(plans.length).toBeGreaterThan(0);
    for (const { filter, plan } of plans)
      expect(indexNames(plan), JSON.stringify(filter)).toEqual(['cleanup']);
  });

  it('an unfinished job stores no finishedAt: queued, running, and again after a retry (last: it changes the counts)', async () => {
    expect(await f.store.jobs.countDocuments({ finishedAt: { $exists: true } })).toBe(
      counts.completed + counts.failed,
    );
    expect(
      await f.store.jobs.countDocuments({
        state: { $in: ['queued', 'running'] },
        finishedAt: { $exists: false },
      }),
    ).toBe(counts.running + counts.queued);
    const failed = await f.store.jobs.findOne({ state: 'failed' });
    const again = await retry(f.store, failed!._id, { now: clock.now() });
    expect(again.state).toBe('queued');
    expect('finishedAt' in again).toBe(false);
    expect('finishedAt' in (await f.store.jobs.findOne({ _id: failed!._id }))!).toBe(false);
  });
});

describe('job indexes: a dependent failed by its dependency and re-armed by a retry', () => {
  let f: StoreFixture;
  beforeAll(async () => {
    f = await openStoreFixture('index_rearm');
  });
  afterAll(async () => {
    await f?.close();
  });

  it('loses its finishedAt again (out of the partial cleanup index)', async () => {
    const now = new Date(Date.UTC(2030, 0, 1));
    const [a] = await enqueueMany(f.store, [newJob('a', {}, { maxAttempts: 1 }, now)], now);
    const [b] = await enqueueMany(f.store, [newJob('b', {}, { dependsOn: [a!.job._id] }, now)], now);
    const job = await claimNext(f.store, { types: ['a'], owner: 'w1', leaseMs: 60_000, now });
    const s = { jobId: job!._id, token: job!.lease!.token, attempt: 1, seq: job!.seq };
    expect(
      await failIfRunning(f.store, { ...s, error: { name: 'E', message: 'no' }, retryAt: null }, ctx(now)),
    ).toBe(true);
    await releaseAfter(f.store, [a!.job._id], now);
    const failed = await f.store.jobs.findOne({ _id: b!.job._id });
    expect(failed).toMatchObject({ state: 'failed', blockedBy: a!.job._id, finishedAt: now });
    await retry(f.store, a!.job._id, { now });
    const rearmed = await f.store.jobs.findOne({ _id: b!.job._id });
    expect(rearmed!.state).toBe('waiting');
    expect('finishedAt' in rearmed!).toBe(false);
  });
});

describe('job indexes: an upgrade from the older definitions', () => {
  let f: StoreFixture;
  beforeAll(async () => {
    f = await openStoreFixture('index_upgrade');
  });
  afterAll(async () => {
    await f?.close();
  });

  async function olderDefinitions(): Promise<void> {
    await f.store.jobs.dropIndex('cleanup');
    await f.store.jobs.createIndex(
      { state: 1, finishedAt: 1, _id: 1, type: 1, startedAt: 1, createdAt: 1, attempts: 1 },
      { name: 'cleanup' },
    );
    await f.store.jobs.createIndex({ type: 1, state: 1 }, { name: 'type_state' });
  }

  it('a start rebuilds cleanup as partial and drops type_state; doctor reports both until then', async () => {
    await olderDefinitions();
    expect(await jobIndexProblems(f.store)).toEqual({
      missing: [],
      changed: ['cleanup'],
      retired: ['type_state'],
    });
    await ensureIndexes(f.store);
    const got = await f.store.jobs.listIndexes().toArray();
    expect(got.some((i) => i.name === 'type_state')).toBe(false);
    expect(got.find((i) => i.name === 'cleanup')?.partialFilterExpression).toEqual({
      finishedAt: { $exists: true },
    });
    expect(await jobIndexProblems(f.store)).toEqual({ missing: [], changed: [], retired: [] });
    // A second start finds nothing to do.
    await ensureIndexes(f.store);
    expect((await f.store.jobs.listIndexes().toArray()).map((i) => i.name)).toEqual(got.map((i) => i.name));
  });

  it('two daemons starting at once both drop the retired index without an error', async () => {
    await olderDefinitions();
    await Promise.all([ensureIndexes(f.store), ensureIndexes(f.store)]);
    expect(await jobIndexProblems(f.store)).toEqual({ missing: [], changed: [], retired: [] });
  });
});
