import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  claimBatch,
  claimNext,
  CLAIM_SORT,
  enqueue,
  enqueueMany,
  eventsOf,
  get,
} from '../../src/store/index.js';
import { claimableFilter } from '../../src/store/claim.js';
import { ensureIndexes } from '../../src/store/indexes.js';
import { newJob, openStoreFixture, TEST_TYPES, type StoreFixture } from './store-helpers.js';

/**
 * An `admit` for claimBatch that, the first time it runs (between the claim's find and its update),
 * has another thread, on its own connection, claim and rescue the jobs `ids`: claimable again, two
 * transitions later. It blocks the claiming thread until that is done. `finish()` stops the thread
 * and gives 1 once the moves were made.
 */
function moveBetweenFindAndUpdate(uri: string, db: string, ids: string[]) {
  const done = new Int32Array(new SharedArrayBuffer(4));
  const other = `
    const { workerData } = require('node:worker_threads');
    const { MongoClient } = require('mongodb');
    (async () => {
      const c = await MongoClient.connect(workerData.uri);
      const jobs = c.db(workerData.db).collection('jobs');
      const lease = { owner: 'other', token: 'other-token', expiresAt: new Date(0) };
      const moved = { _id: { $in: workerData.ids } };
      await jobs.updateMany(moved, { $set: { state: 'running', lease }, $inc: { attempts: 1, seq: 1 } });
      await jobs.updateMany(moved, { $set: { state: 'retrying', lease: null }, $inc: { seq: 1 } });
      await c.close();
    })().finally(() => { Atomics.store(workerData.done, 0, 1); Atomics.notify(workerData.done, 0); });
  `;
  let worker: Worker | undefined;
  return {
    admit: (): boolean => {
      if (!worker) {
        worker = new Worker(other, { eval: true, workerData: { uri, db, ids, done } });
        Atomics.wait(done, 0, 0, 60_000);
      }
      return true;
    },
    finish: async (): Promise<number> => {
      await worker?.terminate();
      return Atomics.load(done, 0);
    },
  };
}

describe('store: claims', () => {
  let f: StoreFixture;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  beforeEach(async () => {
    f = await openStoreFixture('claim');
  });
  afterEach(async () => {
    await f.close();
  });

  it('claims by priority, then runAt, then _id', async () => {
    const now = clock.now();
    const early = new Date(now.getTime() - 60_000);
    const mk = (priority: number, runAt: Date, tag: string) =>
      newJob('noop', { tag }, { priority, runAt }, now);
    const results = await enqueueMany(
      f.store,
      [
        mk(5, early, 'p5-early-a'),
        mk(1, now, 'p1-now'),
        mk(5, early, 'p5-early-b'),
        mk(1, early, 'p1-early'),
        mk(9, early, 'p9'),
      ],
      now,
    );
    // Not yet due: never claimed.
    await enqueue(f.store, newJob('noop', { tag: 'future' }, { priority: 1, delayMs: 60_000 }, now), now);
    const order: string[] = [];
    for (;;) {
      const j = await claimNext(f.store, { types: TEST_TYPES, owner: 'w1', leaseMs: 30_000, now });
      if (!j) break;
      order.push((j.params as { tag: string }).tag);
      expect(j.state).toBe('running');
      expect(j.attempts).toBe(1);
      expect(j.lease?.owner).toBe('w1');
    }
    expect(order).toEqual(['p1-early', 'p1-now', 'p5-early-a', 'p5-early-b', 'p9']);
    expect(results.every((r) => r.created)).toBe(true);
  });

  it('claimBatch takes up to N in claim order and records claim events', async () => {
    const now = clock.now();
    await enqueueMany(
      f.store,
      Array.from({ length: 7 }, (_, i) => newJob('noop', { i }, { priority: 7 - i }, now)),
      now,
    );
    const batch = await claimBatch(f.store, {
      types: TEST_TYPES,
      owner: 'w1',
      leaseMs: 30_000,
      now,
      limit: 5,
    });
    expect(batch.map((j) => (j.params as { i: number }).i)).toEqual([6, 5, 4, 3, 2]);
    expect(new Set(batch.map((j) => j.lease?.token)).size).toBe(1);
    const rest = await claimBatch(f.store, {
      types: TEST_TYPES,
      owner: 'w2',
      leaseMs: 30_000,
      now,
      limit: 5,
    });
    expect(rest).toHaveLength(2);
    const ev = await eventsOf(f.store, batch[0]!._id);
    expect(ev.map((e) => [e.from, e.to])).toEqual([
      [null, 'queued'],
      ['queued', 'running'],
    ]);
  });

  it('a candidate that others claimed and made claimable again after the find is not claimed as it was read', async () => {
    const now = clock.now();
    const job = (await enqueueMany(f.store, [newJob('noop', {}, {}, now)], now))[0]!.job;
    // Between claimBatch's find and its update, another thread (its own connection) moves the job
    // through a claim and a rescue: it is claimable again, two transitions later.
    const mover = moveBetweenFindAndUpdate(f.t.uri, f.t.dbName, [job._id]);
    const opts = { types: TEST_TYPES, owner: 'w1', leaseMs: 30_000, now, limit: 5 };
    const first = await claimBatch(f.store, { ...opts, admit: mover.admit });
    expect(await mover.finish()).toBe(1);
    // Claimed as read, it would carry seq 2 and attempt 1 while the job is at its 4th transition.
    expect(first).toEqual([]);
    const [again] = await claimBatch(f.store, opts);
    const stored = await get(f.store, job._id);
    expect(again).toMatchObject({ seq: 4, attempts: 2 });
    expect(stored).toMatchObject({ state: 'running', seq: 4, attempts: 2 });
    expect((await eventsOf(f.store, job._id, { graceMs: 60_000 })).at(-1)).toMatchObject({
      seq: 4,
      from: 'retrying',
      to: 'running',
      attempt: 2,
    });
  });

  it('candidates read at different transition counts are each claimed only as read, the ones moved in between skipped', async () => {
    const now = clock.now();
    const ids = (
      await enqueueMany(
        f.store,
        [0, 1, 2, 3, 4].map((i) => newJob('noop', { i }, {}, now)),
        now,
      )
    ).map((r) => r.job._id);
    const [a, b, c, d, e] = ids as [string, string, string, string, string];
    // a, b fresh (seq 1); c and d further along (seq 5); e from an older version (no seq).
    await f.store.jobs.updateMany({ _id: { $in: [c, d] } }, { $set: { seq: 5 } });
    await f.store.jobs.updateOne({ _id: e }, { $unset: { seq: '' } });
    // Between the find and the update another connection claims and rescues b, d and e: claimable
    // again, two transitions later (e now numbered from 1).
    const mover = moveBetweenFindAndUpdate(f.t.uri, f.t.dbName, [b, d, e]);
    const opts = { types: TEST_TYPES, owner: 'w1', leaseMs: 30_000, now, limit: 10 };
    const first = await claimBatch(f.store, { ...opts, admit: mover.admit });
    expect(await mover.finish()).toBe(1);
    // Only a and c are still as read: claimed, one transition on.
    expect(first.map((j) => [j._id, j.seq, j.attempts]).sort()).toEqual(
      [
        [a, 2, 1],
        [c, 6, 1],
      ].sort(),
    );
    for (const [id, seq] of [
      [a, 2],
      [c, 6],
    ] as const) {
      expect(await get(f.store, id)).toMatchObject({ state: 'running', seq, attempts: 1 });
    }
    // The moved ones are left to the next round, claimed at their own transition count.
    const again = await claimBatch(f.store, opts);
    expect(again.map((j) => [j._id, j.seq, j.attempts]).sort()).toEqual(
      [
        [b, 4, 2],
        [d, 8, 2],
        [e, 3, 2],
      ].sort(),
    );
    for (const j of again) expect(await get(f.store, j._id)).toMatchObject({ seq: j.seq, attempts: 2 });
  });

  it('claims only the types given, within per-type slots', async () => {
    const now = clock.now();
    await enqueueMany(
      f.store,
      [
        newJob('a', {}, {}, now),
        newJob('a', {}, {}, now),
        newJob('b', {}, {}, now),
        newJob('c', {}, {}, now),
      ],
      now,
    );
    const batch = await claimBatch(f.store, {
      types: ['a', 'b'],
      owner: 'w1',
      leaseMs: 30_000,
      now,
      limit: 10,
      typeSlots: { a: 1 },
    });
    expect(batch.map((j) => j.type).sort()).toEqual(['a', 'b']);
    // The other jobs wait where they were, for a worker that runs their type.
    expect(await claimNext(f.store, { types: ['b'], owner: 'w2', leaseMs: 30_000, now })).toBeNull();
    expect(await f.store.jobs.countDocuments({ state: 'queued' })).toBe(2);
  });

  it('concurrent batch claimers never claim the same job twice', async () => {
    const now = clock.now();
    const n = 300;
    await enqueueMany(
      f.store,
      Array.from({ length: n }, (_, i) => newJob('noop', { i }, {}, now)),
      now,
    );
    const seen = new Map<string, string>();
    const claimer = async (owner: string) => {
      for (;;) {
        const got = await claimBatch(f.store, { types: TEST_TYPES, owner, leaseMs: 30_000, now, limit: 17 });
        for (const j of got) {
          expect(seen.has(j._id), `job ${j._id} claimed by ${seen.get(j._id)} and ${owner}`).toBe(false);
          seen.set(j._id, owner);
        }
        if (got.length === 0) {
          const left = await f.store.jobs.countDocuments({ state: 'queued' });
          if (left === 0) return;
        }
      }
    };
    await Promise.all(['w1', 'w2', 'w3', 'w4', 'w5'].map(claimer));
    expect(seen.size).toBe(n);
    const doc = await get(f.store, [...seen.keys()][0]!);
    expect(doc?.attempts).toBe(1);
  });

  it(
    'the claim index serves the claim: 100,000 queued jobs of a type the worker does not run, ahead in priority, are never examined',
    { timeout: 180_000 },
    async () => {
      const now = clock.now();
      const early = new Date(now.getTime() - 60_000);
      // Inserted directly (their contents do not matter here); in chunks to keep each command small.
      for (let i = 0; i < 100_000; i += 10_000) {
        await f.store.jobs.insertMany(
          Array.from({ length: 10_000 }, (_, k) => ({
            ...newJob('other', {}, { priority: 1, runAt: early }, now),
            _id: `o${String(i + k).padStart(7, '0')}`,
            state: 'queued' as const,
            attempts: 0,
            errors: [],
            tags: [],
            createdAt: now,
            updatedAt: now,
          })),
        );
      }
      await enqueueMany(
        f.store,
        Array.from({ length: 60 }, (_, i) =>
          newJob(i % 2 ? 'noop' : 'sleep', {}, { priority: 5, runAt: early }, now),
        ),
        now,
      );
      const types = ['noop', 'sleep'];
      const explain = async (limit: number) =>
        (await f.store.jobs
          .find(claimableFilter(now, types), { sort: CLAIM_SORT, limit })
          .explain('executionStats')) as {
          executionStats: { nReturned: number; totalDocsExamined: number; totalKeysExamined: number };
        };
      // One range per (state, type): 2 × 2. The server reads at most a key or two past each.
      const one = (await explain(1)).executionStats;
      expect(one.nReturned).toBe(1);
      expect(one.totalDocsExamined).toBeLessThanOrEqual(4 + 1);
      expect(one.totalKeysExamined).toBeLessThanOrEqual(2 * 4 + 1);
      const fifty = (await explain(50)).executionStats;
      expect(fifty.nReturned).toBe(50);
      expect(fifty.totalDocsExamined).toBeLessThanOrEqual(50 + 4);
      // And the claim itself takes those jobs, never the others.
      const got = await claimBatch(f.store, { types, owner: 'w1', leaseMs: 30_000, now, limit: 50 });
      expect(got).toHaveLength(50);
      expect(new Set(got.map((j) => j.type))).toEqual(new Set(types));
    },
  );

  it('an older claim index (same name, another key) is replaced at start', async () => {
    await f.store.jobs.dropIndex('claim');
    await f.store.jobs.createIndex({ state: 1, priority: 1, runAt: 1, _id: 1 }, { name: 'claim' });
    await ensureIndexes(f.store);
    const claim = (await f.store.jobs.listIndexes().toArray()).find((i) => i.name === 'claim');
    expect(claim?.key).toEqual({ state: 1, type: 1, priority: 1, runAt: 1, _id: 1 });
  });
});
