import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { claimBatch, claimNext, enqueue, enqueueMany, eventsOf, get } from '../../src/store/index.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

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
      const j = await claimNext(f.store, { owner: 'w1', leaseMs: 30_000, now });
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
    const batch = await claimBatch(f.store, { owner: 'w1', leaseMs: 30_000, now, limit: 5 });
    expect(batch.map((j) => (j.params as { i: number }).i)).toEqual([6, 5, 4, 3, 2]);
    expect(new Set(batch.map((j) => j.lease?.token)).size).toBe(1);
    const rest = await claimBatch(f.store, { owner: 'w2', leaseMs: 30_000, now, limit: 5 });
    expect(rest).toHaveLength(2);
    const ev = await eventsOf(f.store, batch[0]!._id);
    expect(ev.map((e) => [e.from, e.to])).toEqual([
      [null, 'queued'],
      ['queued', 'running'],
    ]);
  });

  it('respects excluded types and per-type slots', async () => {
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
      owner: 'w1',
      leaseMs: 30_000,
      now,
      limit: 10,
      excludeTypes: ['c'],
      typeSlots: { a: 1 },
    });
    expect(batch.map((j) => j.type).sort()).toEqual(['a', 'b']);
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
        const got = await claimBatch(f.store, { owner, leaseMs: 30_000, now, limit: 17 });
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
});
