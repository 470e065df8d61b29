/**
 * Updates keep every index exact, whichever fields they touch: an index on a nested path follows an
 * update of that path only; a partial index gains and loses documents as its filter's field changes;
 * an update of other fields leaves every entry in place; a unique index still refuses a duplicate an
 * update would create, and accepts an update of other fields of a document it holds. Each index is read
 * through a hint, so a stale entry (or a missing one) shows as a wrong answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection, Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let coll: Collection<Document>;

beforeAll(async () => {
  t = await openTestDb('index_updates');
  coll = t.db.collection('jobs');
  await coll.createIndexes([
    { key: { 'lease.token': 1 }, name: 'lease' },
    { key: { state: 1, runAt: 1 }, name: 'claim' },
    { key: { wf: 1, state: 1 }, name: 'wf', partialFilterExpression: { wf: { $exists: true } } },
    { key: { dk: 1 }, name: 'dk', unique: true, partialFilterExpression: { dkOn: { $exists: true } } },
  ]);
  await coll.insertMany([
    { _id: 1 as never, state: 'queued', runAt: 1, lease: { token: 'a', at: 1 }, dk: 'x', dkOn: true },
    { _id: 2 as never, state: 'queued', runAt: 2, lease: { token: 'b', at: 1 }, dk: 'y', dkOn: true },
    { _id: 3 as never, state: 'queued', runAt: 3, wf: 'w', dk: 'x' },
  ]);
});

afterAll(async () => {
  await t?.close();
});

const ids = async (filter: Document, hint: string): Promise<unknown[]> =>
  (await coll.find(filter, { hint, projection: { _id: 1 }, sort: { _id: 1 } }).toArray()).map((d) => d._id);

describe('index entries across updates', () => {
  it('follows a nested indexed path, and only it', async () => {
    await coll.updateOne({ _id: 1 as never }, { $set: { 'lease.at': 2, note: 'n' } });
    expect(await ids({ 'lease.token': 'a' }, 'lease')).toEqual([1]);
    await coll.updateOne({ _id: 1 as never }, { $set: { 'lease.token': 'c' } });
    expect(await ids({ 'lease.token': 'a' }, 'lease')).toEqual([]);
    expect(await ids({ 'lease.token': 'c' }, 'lease')).toEqual([1]);
    await coll.updateOne({ _id: 2 as never }, { $unset: { lease: '' } });
    expect(await ids({ 'lease.token': 'b' }, 'lease')).toEqual([]);
    expect(await ids({ 'lease.token': null }, 'lease')).toEqual([2, 3]);
  });

  it('moves entries of a compound index when one of its fields changes', async () => {
    await coll.updateMany({ _id: { $in: [1, 2] } as never }, { $set: { note: 'm' }, $inc: { runAt: 10 } });
    expect(await ids({ state: 'queued', runAt: { $gt: 10 } }, 'claim')).toEqual([1, 2]);
    await coll.findOneAndUpdate({ _id: 2 as never }, { $set: { state: 'running' } });
    expect(await ids({ state: 'queued' }, 'claim')).toEqual([1, 3]);
    expect(await ids({ state: 'running' }, 'claim')).toEqual([2]);
  });

  it('adds and drops documents of a partial index as its filter field comes and goes', async () => {
    expect(await ids({ wf: 'w' }, 'wf')).toEqual([3]);
    await coll.updateOne({ _id: 1 as never }, { $set: { wf: 'w' } });
    await coll.updateOne({ _id: 3 as never }, { $unset: { wf: '' } });
    expect(await ids({ wf: 'w' }, 'wf')).toEqual([1]);
    await coll.updateOne({ _id: 1 as never }, { $set: { state: 'done' } });
    expect(await ids({ wf: 'w', state: 'done' }, 'wf')).toEqual([1]);
  });

  it('refuses a duplicate a unique partial index would get, and allows other updates', async () => {
    await coll.updateOne({ _id: 1 as never }, { $set: { other: 1 } });
    await expect(coll.updateOne({ _id: 2 as never }, { $set: { dk: 'x' } })).rejects.toMatchObject({
      code: 11000,
    });
    // Document 3 holds dk 'x' outside the index; entering it (dkOn set) is the duplicate.
    await expect(coll.updateOne({ _id: 3 as never }, { $set: { dkOn: true } })).rejects.toMatchObject({
      code: 11000,
    });
    await coll.updateOne({ _id: 1 as never }, { $unset: { dkOn: '' } });
    await coll.updateOne({ _id: 3 as never }, { $set: { dkOn: true } });
    expect(await ids({ dk: 'x', dkOn: true }, 'dk')).toEqual([3]);
    expect((await coll.findOne({ _id: 2 as never }))?.dk).toBe('y');
  });
});
