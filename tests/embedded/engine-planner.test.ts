/**
 * Index use, proven through explain's executionStats (which real MongoDB reports the same way):
 * a filter and sort an index prefix can serve examine about `limit` documents, not the collection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection, Document, Sort } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let jobs: Collection<Document>;
const now = new Date('2030-01-01T00:00:00Z');
const N = 3000;

async function explainFind(filter: Document, sort: Sort, limit: number): Promise<Document> {
  return jobs.find(filter).sort(sort).limit(limit).explain('executionStats');
}

beforeAll(async () => {
  t = await openTestDb('planner');
  jobs = t.db.collection('jobs');
  await jobs.createIndex({ state: 1, priority: 1, runAt: 1, _id: 1 }, { name: 'claim' });
  const states = ['queued', 'retrying', 'running', 'done'];
  const docs: Document[] = [];
  for (let i = 0; i < N; i++) {
    docs.push({
      _id: i,
      state: states[i % 4],
      priority: i % 3,
      // A third of the queue is scheduled in the future and must be skipped.
      runAt: new Date(now.getTime() + ((i % 9) - 6) * 60_000),
      type: i % 5 === 0 ? 'slow' : 'fast',
    });
  }
  await jobs.insertMany(docs);
});

afterAll(async () => {
  await t.close();
});

describe('query planning', () => {
  const claimFilter = { state: { $in: ['queued', 'retrying'] }, runAt: { $lte: now } };
  const claimSort = { priority: 1, runAt: 1, _id: 1 } as const;

  it('claims in (priority, runAt, _id) order across both $in states', async () => {
    const got = await jobs.find(claimFilter).sort(claimSort).limit(20).toArray();
    const all = (await jobs.find({}).toArray()).filter(
      (d) => (d.state === 'queued' || d.state === 'retrying') && (d.runAt as Date).getTime() <= now.getTime(),
    );
    all.sort(
      (a, b) =>
        (a.priority as number) - (b.priority as number) ||
        (a.runAt as Date).getTime() - (b.runAt as Date).getTime() ||
        (a._id as unknown as number) - (b._id as unknown as number),
    );
    expect(got.map((d) => d._id)).toEqual(all.slice(0, 20).map((d) => d._id));
  });

  it('walks the claim index and examines a handful of documents for limit 1', async () => {
    const plan = await explainFind(claimFilter, claimSort, 1);
    expect(JSON.stringify(plan.queryPlanner)).toContain('IXSCAN');
    expect(plan.executionStats.nReturned).toBe(1);
    expect(plan.executionStats.totalDocsExamined).toBeLessThan(20);
  });

  it('keeps examining few documents with an extra $nin on type', async () => {
    const plan = await explainFind({ ...claimFilter, type: { $nin: ['slow'] } }, claimSort, 5);
    expect(plan.executionStats.nReturned).toBe(5);
    expect(plan.executionStats.totalDocsExamined).toBeLessThan(40);
  });

  it('serves a reversed sort from the same index', async () => {
    const plan = await explainFind({ state: 'queued' }, { priority: -1, runAt: -1, _id: -1 } as const, 3);
    const docs = await jobs
      .find({ state: 'queued' })
      .sort({ priority: -1, runAt: -1, _id: -1 } as const)
      .limit(3)
      .toArray();
    expect(docs.map((d) => d.priority)).toEqual([2, 2, 2]);
    expect(plan.executionStats.totalDocsExamined).toBeLessThanOrEqual(3);
  });

  it('looks an _id up without scanning', async () => {
    const plan = await jobs.find({ _id: 1234 } as Document).explain('executionStats');
    expect(plan.executionStats.nReturned).toBe(1);
    expect(plan.executionStats.totalDocsExamined).toBe(1);
  });

  it('uses an equality prefix followed by a range', async () => {
    await jobs.createIndex({ type: 1, runAt: 1 });
    const filter = { type: 'slow', runAt: { $gt: new Date(now.getTime() + 60_000) } };
    const plan = await jobs.find(filter).explain('executionStats');
    const expected = await jobs.countDocuments(filter);
    expect(plan.executionStats.nReturned).toBe(expected);
    expect(plan.executionStats.totalDocsExamined).toBe(expected);
  });

  it('serves equality on a sparse index, and still finds documents missing the field when asked for null', async () => {
    await jobs.updateMany({ _id: { $in: [1, 2, 3] } } as Document, { $set: { 'lease.token': 'tok' } });
    await jobs.createIndex({ 'lease.token': 1 }, { sparse: true });
    const plan = await jobs.find({ 'lease.token': 'tok' }).explain('executionStats');
    expect(plan.executionStats.nReturned).toBe(3);
    expect(plan.executionStats.totalDocsExamined).toBe(3);
    expect(await jobs.countDocuments({ 'lease.token': null })).toBe(N - 3);
  });

  it('findOneAndUpdate claims through the index, one document each time', async () => {
    const first = await jobs.findOneAndUpdate(
      claimFilter,
      { $set: { state: 'running' } },
      { sort: claimSort, returnDocument: 'after' },
    );
    const second = await jobs.findOneAndUpdate(
      claimFilter,
      { $set: { state: 'running' } },
      { sort: claimSort, returnDocument: 'after' },
    );
    expect(first?.state).toBe('running');
    expect(second?._id).not.toEqual(first?._id);
    expect([first?.priority, second?.priority]).toEqual([0, 0]);
    const plan = (await t.db.command({
      explain: {
        findAndModify: 'jobs',
        query: claimFilter,
        sort: claimSort,
        update: { $set: { state: 'running' } },
      },
      verbosity: 'executionStats',
    })) as Document;
    expect(plan.executionStats.totalDocsExamined).toBeLessThan(20);
  });

  it('serves a query through a partial index only when the query implies its filter', async () => {
    const deps = t.db.collection('deps');
    const docs: Document[] = [];
    for (let i = 0; i < 500; i++)
      docs.push({ _id: i, ...(i % 50 === 0 ? { dependsOn: [`j${i}`, 'x'] } : {}) });
    await deps.insertMany(docs);
    await deps.createIndex(
      { dependsOn: 1 },
      { name: 'deps', partialFilterExpression: { dependsOn: { $exists: true } } },
    );
    const plan = await deps.find({ dependsOn: { $in: ['j100', 'j200', 'nope'] } }).explain('executionStats');
    expect(plan.executionStats.nReturned).toBe(2);
    expect(plan.executionStats.totalDocsExamined).toBe(2);
    expect(await deps.distinct('_id', { dependsOn: 'x' })).toHaveLength(10);
    // Documents outside the index must still be found by a query that does not imply its filter.
    expect(await deps.countDocuments({ dependsOn: null })).toBe(490);
    expect(await deps.countDocuments({ dependsOn: { $nin: ['x'] } })).toBe(490);
  });

  it('orders ties of an index key by _id, forward, backward and across $in ranges', async () => {
    const ties = t.db.collection('ties');
    const at = [
      new Date(now.getTime() + 1000),
      new Date(now.getTime() + 2000),
      new Date(now.getTime() + 3000),
    ];
    const docs: Document[] = [];
    for (let i = 0; i < 300; i++)
      docs.push({ _id: (i * 7919) % 1000, state: ['a', 'b', 'c'][i % 3], at: at[(i * 13) % 3] });
    await ties.insertMany(docs);
    await ties.createIndex({ state: 1, at: 1 });
    const reference = (filter: (d: Document) => boolean, dir: 1 | -1, idDir: 1 | -1) =>
      docs
        .filter(filter)
        .sort(
          (x, y) =>
            dir * ((x.at as Date).getTime() - (y.at as Date).getTime()) ||
            idDir * ((x._id as number) - (y._id as number)),
        )
        .map((d) => d._id as number);
    const inAB = (d: Document) => d.state === 'a' || d.state === 'b';
    const cases: [Document, (d: Document) => boolean, 1 | -1, 1 | -1][] = [
      [{ state: 'a', at: { $gte: at[0] } }, (d) => d.state === 'a', 1, 1],
      [{ state: 'b' }, (d) => d.state === 'b', -1, -1],
      [{ state: { $in: ['a', 'b'] } }, inAB, 1, 1],
      [{ state: { $in: ['a', 'b'] } }, inAB, -1, -1],
      [{ state: { $in: ['a', 'b'] } }, inAB, 1, -1],
    ];
    for (const [filter, f, dir, idDir] of cases) {
      const want = reference(f, dir, idDir);
      for (const limit of [7, 0]) {
        const got = await ties.find(filter).sort({ at: dir, _id: idDir }).limit(limit).toArray();
        expect(got.map((d) => d._id)).toEqual(limit ? want.slice(0, limit) : want);
      }
    }
  });
});
