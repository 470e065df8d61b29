/**
 * bulkWrite and insertMany: an ordered batch stops at the first error, an unordered one carries on and
 * reports every write error with the index of the failing operation; results count what was applied.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MongoBulkWriteError, type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let coll: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('conf_bulk');
  coll = t.db.collection('b');
  await coll.insertOne({ _id: 1, n: 0 } as Document);
});

afterEach(async () => {
  await t.close();
});

async function bulkError(p: Promise<unknown>): Promise<MongoBulkWriteError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MongoBulkWriteError) return err;
    throw err;
  }
  throw new Error('expected a bulk write error, the batch succeeded');
}

async function ids(): Promise<unknown[]> {
  return (await coll.find({}, { sort: { _id: 1 } }).toArray()).map((d) => d._id);
}

describe('bulkWrite', () => {
  it('applies mixed operations and reports every count', async () => {
    const r = await coll.bulkWrite([
      { insertOne: { document: { _id: 2, n: 0 } } },
      { insertOne: { document: { _id: 3, n: 0 } } },
      { updateOne: { filter: { _id: 1 }, update: { $inc: { n: 1 } } } },
      { updateMany: { filter: { n: 0 }, update: { $set: { m: true } } } },
      { updateOne: { filter: { _id: 4 }, update: { $set: { n: 4 } }, upsert: true } },
      { replaceOne: { filter: { _id: 5 }, replacement: { n: 5 }, upsert: true } },
      { replaceOne: { filter: { _id: 2 }, replacement: { n: 22 } } },
      { deleteOne: { filter: { _id: 3 } } },
      { deleteMany: { filter: { n: { $gte: 100 } } } },
    ]);
    expect(r.insertedCount).toBe(2);
    expect(r.matchedCount).toBe(4);
    expect(r.modifiedCount).toBe(4);
    expect(r.upsertedCount).toBe(2);
    expect(r.deletedCount).toBe(1);
    expect(r.upsertedIds).toEqual({ 4: 4, 5: 5 });
    expect(r.insertedIds).toEqual({ 0: 2, 1: 3 });
    expect(await coll.find({}, { sort: { _id: 1 } }).toArray()).toEqual([
      { _id: 1, n: 1 },
      { _id: 2, n: 22 },
      { _id: 4, n: 4 },
      { _id: 5, n: 5 },
    ]);
  });

  it('ordered: stops at the first error; the error carries the counts so far', async () => {
    const err = await bulkError(
      coll.bulkWrite(
        [
          { insertOne: { document: { _id: 2 } } },
          { updateOne: { filter: { _id: 1 }, update: { $set: { n: 9 } } } },
          { insertOne: { document: { _id: 1 } } },
          { insertOne: { document: { _id: 3 } } },
          { deleteOne: { filter: { _id: 2 } } },
        ],
        { ordered: true },
      ),
    );
    expect(err.code).toBe(11000);
    expect(err.writeErrors).toHaveLength(1);
    const [we] = err.writeErrors as unknown as { index: number; code: number }[];
    expect(we?.index).toBe(2);
    expect(we?.code).toBe(11000);
    expect(err.result.insertedCount).toBe(1);
    expect(err.result.matchedCount).toBe(1);
    expect(err.result.modifiedCount).toBe(1);
    expect(err.result.deletedCount).toBe(0);
    expect(await ids()).toEqual([1, 2]);
    expect((await coll.findOne({ _id: 1 }))?.n).toBe(9);
  });

  it('unordered: continues past errors and reports each with its index', async () => {
    const err = await bulkError(
      coll.bulkWrite(
        [
          { insertOne: { document: { _id: 1 } } },
          { insertOne: { document: { _id: 4 } } },
          { insertOne: { document: { _id: 4 } } },
          { updateOne: { filter: { _id: 1 }, update: { $set: { _id: 100 } } } },
          { insertOne: { document: { _id: 5 } } },
          { deleteOne: { filter: { _id: 1 } } },
        ],
        { ordered: false },
      ),
    );
    const writeErrors = (err.writeErrors as unknown as { index: number; code: number }[]).map((e) => ({
      index: e.index,
      code: e.code,
    }));
    expect(writeErrors.sort((a, b) => a.index - b.index)).toEqual([
      { index: 0, code: 11000 },
      { index: 2, code: 11000 },
      { index: 3, code: 66 },
    ]);
    expect(err.result.insertedCount).toBe(2);
    expect(err.result.deletedCount).toBe(1);
    expect(await ids()).toEqual([4, 5]);
  });
});

describe('insertMany', () => {
  it('ordered: inserts up to the duplicate and stops', async () => {
    const err = await bulkError(coll.insertMany([{ _id: 2 }, { _id: 1 }, { _id: 3 }] as Document[]));
    expect(err.writeErrors).toHaveLength(1);
    expect((err.writeErrors as unknown as { index: number }[])[0]?.index).toBe(1);
    expect(err.result.insertedCount).toBe(1);
    expect(await ids()).toEqual([1, 2]);
  });

  it('unordered: inserts everything else', async () => {
    const err = await bulkError(
      coll.insertMany([{ _id: 1 }, { _id: 2 }, { _id: 2 }, { _id: 3 }] as Document[], { ordered: false }),
    );
    expect((err.writeErrors as unknown as { index: number }[]).map((e) => e.index).sort()).toEqual([0, 2]);
    expect(err.result.insertedCount).toBe(2);
    expect(await ids()).toEqual([1, 2, 3]);
  });
});
