/**
 * finishedTimeline: jobs finished in equal buckets, with outcomes and run-time percentiles, every
 * bucket present (empty ones too), the window's edges respected. Jobs are written as finished
 * documents with chosen times, so each bucket's expected content is known.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finishedTimeline } from '../../src/store/index.js';
import type { JobState } from '../../src/types.js';
import { openStoreFixture, type StoreFixture } from './store-helpers.js';

let f: StoreFixture;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const MIN = 60_000;

beforeAll(async () => {
  f = await openStoreFixture('timeline');
  const job = (n: number, state: JobState, type: string, finishedMin: number, runMs: number) => ({
    _id: `j${n}`,
    type,
    state,
    createdAt: new Date(T0 + finishedMin * MIN - runMs - 1000),
    startedAt: new Date(T0 + finishedMin * MIN - runMs),
    finishedAt: new Date(T0 + finishedMin * MIN),
  });
  await f.store.jobs.insertMany([
    job(1, 'completed', 'a', 1, 100), // bucket 0
    job(2, 'completed', 'a', 2, 300), // bucket 0
    job(3, 'failed', 'b', 7, 500), // bucket 1
    job(4, 'cancelled', 'a', 29.99, 50), // bucket 2
    job(5, 'completed', 'a', 30, 10), // at `until`: outside
    job(6, 'completed', 'a', -1, 10), // before `since`: outside
    { ...job(7, 'running', 'a', 3, 10), finishedAt: null },
  ] as never[]);
});
afterAll(() => f?.close());

describe('finishedTimeline', () => {
  it('counts each finished job in its bucket, with run-time percentiles, and fills empty buckets', async () => {
    const since = new Date(T0);
    const until = new Date(T0 + 30 * MIN);
    const buckets = await finishedTimeline(f.store, { since, until, bucketMs: 5 * MIN });
    expect(buckets.map((b) => b.at.getTime())).toEqual([0, 5, 10, 15, 20, 25].map((m) => T0 + m * MIN));
    expect(buckets.map((b) => [b.completed, b.failed, b.cancelled])).toEqual([
      [2, 0, 0],
      [0, 1, 0],
      [0, 0, 0],
      [0, 0, 0],
      [0, 0, 0],
      [0, 0, 1],
    ]);
    expect(buckets[0]!.runP95Ms).toBe(300);
    expect([100, 300]).toContain(buckets[0]!.runP50Ms);
    expect(buckets[1]!.runP50Ms).toBe(500);
    expect(buckets[2]!.runP50Ms).toBeNull();
    const typeB = await finishedTimeline(f.store, { since, until, bucketMs: 10 * MIN, type: 'b' });
    expect(typeB.map((b) => b.failed + b.completed + b.cancelled)).toEqual([1, 0, 0]);
  });
});
