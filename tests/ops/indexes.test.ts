/**
 * The partial rescue and dataset indexes: jobs outside them (finished, queued, no dataset) are not in
 * them, the rescue and dataset queries still walk them (explain's executionStats, as MongoDB reports
 * it), and a daemon start replaces the older full definitions of the same name (which doctor's index
 * check reports until then).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureIndexes,
  enqueueMany,
  jobIndexProblems,
  resolveNewJob,
  type Store,
} from '../../src/store/index.js';
import { jobsOfDataset } from '../../src/store/datasets.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';
import { indexNames } from '../helpers/plans.js';

let f: StoreFixture;
let store: Store;
/** What doctor's index check found before the start replaced the older definitions. */
let before: { missing: string[]; changed: string[]; retired: string[] };
const now = new Date('2030-01-01T00:00:00Z');
const DEFAULTS = { priority: 5, maxAttempts: 3, timeoutMs: 60_000 };

beforeAll(async () => {
  f = await openStoreFixture('indexes');
  store = f.store;
  // The older definitions: same names, no partial filter.
  await store.jobs.dropIndex('rescue');
  await store.jobs.dropIndex('dataset');
  await store.jobs.createIndex({ state: 1, 'lease.expiresAt': 1 }, { name: 'rescue' });
  await store.jobs.createIndex({ datasetUuid: 1 }, { name: 'dataset' });
  before = await jobIndexProblems(store);
  await ensureIndexes(store);
  const jobs = Array.from({ length: 60 }, (_, i) =>
    resolveNewJob('noop', { i }, i % 20 === 0 ? { datasetUuid: `ds-${i}` } : {}, DEFAULTS, now),
  );
  const made = await enqueueMany(store, jobs, now);
  // Three running jobs with leases, one of them expired.
  const ids = made.slice(1, 4).map((r) => r.job._id);
  for (const [k, id] of ids.entries()) {
    await store.jobs.updateOne(
      { _id: id },
      {
        $set: {
          state: 'running',
          lease: { owner: 'w', token: `t${k}`, expiresAt: new Date(now.getTime() + (k - 1) * 60_000) },
        },
      },
    );
  }
});

afterAll(async () => {
  await f.close();
});

describe('partial job indexes', () => {
  it('a start replaces the full rescue and dataset indexes with the partial ones', async () => {
    const got = await store.jobs.listIndexes().toArray();
    expect(got.find((i) => i.name === 'rescue')?.partialFilterExpression).toEqual({
      'lease.expiresAt': { $exists: true },
    });
    expect(got.find((i) => i.name === 'dataset')?.partialFilterExpression).toEqual({
      datasetUuid: { $exists: true },
    });
    expect(before).toEqual({ missing: [], changed: ['rescue', 'dataset'], retired: [] });
    expect(await jobIndexProblems(store)).toEqual({ missing: [], changed: [], retired: [] });
    // A second start finds them as it wants them and leaves them be.
    await ensureIndexes(store);
    expect((await store.jobs.listIndexes().toArray()).length).toBe(got.length);
  });

  it('a job without a dataset stores no datasetUuid (so it stays out of the dataset index)', async () => {
    expect(await store.jobs.countDocuments({ datasetUuid: { $exists: true } })).toBe(3);
    expect(await store.jobs.countDocuments({ datasetUuid: null })).toBe(57);
  });

  it('the rescue query walks the rescue index and examines only the expired lease', async () => {
    const filter = { state: 'running' as const, 'lease.expiresAt': { $lt: now } };
    const plan = await store.jobs.find(filter).sort({ 'lease.expiresAt': 1 }).explain('executionStats');
    expect(indexNames(plan)).toEqual(['rescue']);
    expect(plan.executionStats.nReturned).toBe(1);
    expect(plan.executionStats.totalDocsExamined).toBe(1);
  });

  it('the dataset queries walk the dataset index', async () => {
    const one = await store.jobs.find({ datasetUuid: 'ds-20' }).explain('executionStats');
    expect(indexNames(one)).toEqual(['dataset']);
    expect(one.executionStats.totalDocsExamined).toBe(1);
    const some = await store.jobs.find({ datasetUuid: { $in: ['ds-0', 'ds-40'] } }).explain('executionStats');
    expect(indexNames(some)).toEqual(['dataset']);
    expect(some.executionStats.totalDocsExamined).toBe(2);
    expect((await jobsOfDataset(store, 'ds-40', 10)).map((j) => j.params)).toEqual([{ i: 40 }]);
  });
});
