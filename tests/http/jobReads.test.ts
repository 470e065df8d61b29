/**
 * Batched single-job reads (GET /api/jobs/{id}): many concurrent reads go as few queries, a read never
 * answers older than its request (a write acknowledged before it is seen), and a missing id is null.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobReads } from '../../src/http/jobReads.js';
import { editIfNotRunning, enqueueMany } from '../../src/store/index.js';
import { newJob, openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

let fx: StoreFixture;
beforeAll(async () => {
  fx = await openStoreFixture('http-jobreads');
});
afterAll(() => fx?.close());

describe('JobReads', () => {
  it('answers concurrent reads with few queries, each with its own job or null', async () => {
    const now = new Date();
    const made = await enqueueMany(
      fx.store,
      Array.from({ length: 210 }, (_, n) => newJob('echo', { n }, {}, now)),
      now,
    );
    const ids = made.map((r) => r.job._id);
    const reads = new JobReads(fx.store);
    const asked = [...ids, ...ids.slice(0, 50), 'no-such-job'];
    const got = await Promise.all(asked.map((id) => reads.get(id)));
    expect(got.slice(0, -1).map((j) => j?._id)).toEqual(asked.slice(0, -1));
    expect(got.slice(0, 210).map((j) => (j?.params as { n: number }).n)).toEqual(ids.map((_, n) => n));
    expect(got.at(-1)).toBeNull();
    // 211 distinct ids asked in one round: two queries of 100 go at once, the last 11 when one returns.
    expect(reads.stats).toEqual({ queries: 3, ids: 211 });
    // idle() waits for a read still batched or out (the server's close awaits it before the store closes).
    let answered = false;
    void reads.get(ids[0]!).then(() => (answered = true));
    await reads.idle();
    expect(answered).toBe(true);
  });

  it('reads jobs past one 16 MiB reply batch (the server leaves a cursor open for the rest)', async () => {
    const now = new Date();
    const blob = 'x'.repeat(9 * 1024 * 1024);
    const made = await enqueueMany(
      fx.store,
      [0, 1].map((n) => newJob('echo', { n, blob }, {}, now)),
      now,
    );
    const reads = new JobReads(fx.store);
    const got = await Promise.all(made.map(({ job }) => reads.get(job._id)));
    expect(got.map((j) => (j?.params as { n: number }).n)).toEqual([0, 1]);
    expect(reads.stats).toEqual({ queries: 1, ids: 2 });
    await fx.store.jobs.deleteMany({ _id: { $in: made.map(({ job }) => job._id) } });
  });

  it('reads asked while queries are out go together, and each sees the write acknowledged before it', async () => {
    const now = new Date();
    const made = await enqueueMany(
      fx.store,
      Array.from({ length: 8 }, () => newJob('echo', {}, {}, now)),
      now,
    );
    const reads = new JobReads(fx.store);
    // Eight clients, each writing its own job then reading it back, five times over.
    const seen = await Promise.all(
      made.map(async ({ job }) => {
        const tags: string[] = [];
        for (let k = 0; k < 5; k++) {
          await editIfNotRunning(fx.store, job._id, { tags: [`round-${k}`] }, new Date());
          tags.push((await reads.get(job._id))!.tags[0]!);
        }
        return tags;
      }),
    );
    for (const tags of seen) expect(tags).toEqual(['round-0', 'round-1', 'round-2', 'round-3', 'round-4']);
    expect(reads.stats.ids).toBe(40);
  });
});
