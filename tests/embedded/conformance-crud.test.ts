/**
 * CRUD through the official driver, asserting MongoDB's documented behaviour so the same suite passes
 * against a real MongoDB: inserts, filters, projections, sort/skip/limit, update operators, upserts,
 * replacements, _id immutability, deletes, distinct and counts.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ObjectId, Timestamp, type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { serverError } from '../helpers/serverError.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let coll: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('conf_crud');
  coll = t.db.collection('items');
});

afterEach(async () => {
  await t.close();
});

async function all(filter: Document = {}): Promise<Document[]> {
  return coll.find(filter, { sort: { _id: 1 } }).toArray();
}

/** Update operators the driver's schema types do not model on free-form documents. */
function updateFirst(update: Document) {
  return coll.updateOne({ _id: 1 }, update as never);
}

describe('inserts', () => {
  it('insertOne generates an ObjectId _id when none is given and keeps a given one', async () => {
    const generated = await coll.insertOne({ name: 'a' });
    expect(generated.acknowledged).toBe(true);
    expect(generated.insertedId).toBeInstanceOf(ObjectId);
    const given = await coll.insertOne({ _id: 'b' as never, name: 'b' });
    expect(given.insertedId).toBe('b');
    const docs = await coll.find({}, { sort: { name: 1 } }).toArray();
    expect(docs).toEqual([
      { _id: generated.insertedId, name: 'a' },
      { _id: 'b', name: 'b' },
    ]);
  });

  it('insertMany reports the count and the ids by index', async () => {
    const result = await coll.insertMany([{ _id: 1, v: 'x' }, { _id: 2, v: 'y' }, { v: 'z' }] as Document[]);
    expect(result.insertedCount).toBe(3);
    expect(result.insertedIds[0]).toBe(1);
    expect(result.insertedIds[1]).toBe(2);
    expect(result.insertedIds[2]).toBeInstanceOf(ObjectId);
    expect(await coll.countDocuments()).toBe(3);
  });

  it('rejects a duplicate _id with DuplicateKey 11000', async () => {
    await coll.insertOne({ _id: 7 } as Document);
    const err = await serverError(coll.insertOne({ _id: 7 } as Document));
    expect(err.code).toBe(11000);
    expect(err.keyPattern).toEqual({ _id: 1 });
    expect(err.keyValue).toEqual({ _id: 7 });
  });
});

describe('find', () => {
  beforeEach(async () => {
    await coll.insertMany([
      { _id: 1, name: 'ann', age: 31, tags: ['a', 'b'], address: { city: 'Oslo', zip: '0150' } },
      { _id: 2, name: 'bob', age: 25, tags: ['b'], address: { city: 'Bergen', zip: '5003' } },
      { _id: 3, name: 'cid', age: 42, tags: [], address: { city: 'Oslo', zip: '0151' } },
      { _id: 4, name: 'dee', age: 25, address: null },
      {
        _id: 5,
        name: 'eve',
        scores: [
          { k: 'x', v: 3 },
          { k: 'y', v: 9 },
        ],
      },
    ] as Document[]);
  });

  it('matches equality, comparison, $in/$nin, $and/$or/$nor and $not', async () => {
    const ids = async (filter: Document) => (await all(filter)).map((d) => d._id);
    expect(await ids({ age: 25 })).toEqual([2, 4]);
    expect(await ids({ age: { $gt: 25, $lte: 42 } })).toEqual([1, 3]);
    expect(await ids({ name: { $in: ['ann', 'eve', 'zed'] } })).toEqual([1, 5]);
    expect(await ids({ age: { $nin: [25, 31] } })).toEqual([3, 5]);
    expect(await ids({ $or: [{ age: 42 }, { name: 'bob' }] })).toEqual([2, 3]);
    expect(await ids({ $and: [{ age: { $gte: 25 } }, { age: { $lt: 40 } }] })).toEqual([1, 2, 4]);
    expect(await ids({ $nor: [{ age: 25 }, { age: { $exists: false } }] })).toEqual([1, 3]);
    expect(await ids({ age: { $not: { $gt: 30 } } })).toEqual([2, 4, 5]);
  });

  it('matches dotted paths, array elements, $all, $size, $elemMatch, $exists, $type and $regex', async () => {
    const ids = async (filter: Document) => (await all(filter)).map((d) => d._id);
    expect(await ids({ 'address.city': 'Oslo' })).toEqual([1, 3]);
    expect(await ids({ tags: 'b' })).toEqual([1, 2]);
    expect(await ids({ tags: { $all: ['a', 'b'] } })).toEqual([1]);
    expect(await ids({ tags: { $size: 0 } })).toEqual([3]);
    expect(await ids({ scores: { $elemMatch: { k: 'y', v: { $gt: 5 } } } })).toEqual([5]);
    expect(await ids({ scores: { $elemMatch: { k: 'x', v: { $gt: 5 } } } })).toEqual([]);
    expect(await ids({ address: { $exists: false } })).toEqual([5]);
    // A null query matches both an explicit null and a missing field.
    expect(await ids({ address: null })).toEqual([4, 5]);
    expect(await ids({ address: { $type: 'null' } })).toEqual([4]);
    expect(await ids({ name: { $regex: '^[ab]' } })).toEqual([1, 2]);
    expect(await ids({ name: /E$/i })).toEqual([4, 5]);
  });

  it('projects with inclusion, exclusion and dotted fields; _id is included unless excluded', async () => {
    expect(await coll.findOne({ _id: 1 }, { projection: { name: 1 } })).toEqual({ _id: 1, name: 'ann' });
    expect(await coll.findOne({ _id: 1 }, { projection: { name: 1, _id: 0 } })).toEqual({ name: 'ann' });
    expect(await coll.findOne({ _id: 1 }, { projection: { tags: 0, address: 0, age: 0 } })).toEqual({
      _id: 1,
      name: 'ann',
    });
    expect(await coll.findOne({ _id: 1 }, { projection: { 'address.city': 1, _id: 0 } })).toEqual({
      address: { city: 'Oslo' },
    });
  });

  it('projects array slices with $slice, alone, with inclusion and with exclusion', async () => {
    expect(await coll.findOne({ _id: 5 }, { projection: { scores: { $slice: -1 } } })).toEqual({
      _id: 5,
      name: 'eve',
      scores: [{ k: 'y', v: 9 }],
    });
    expect(await coll.findOne({ _id: 1 }, { projection: { name: 1, tags: { $slice: [1, 1] } } })).toEqual({
      _id: 1,
      name: 'ann',
      tags: ['b'],
    });
    // A $slice inside an exclusion projection keeps every field that is not excluded.
    expect(
      await coll.findOne({ _id: 5 }, { projection: { scores: { $slice: 1 }, _id: 0, name: 0 } }),
    ).toEqual({ scores: [{ k: 'x', v: 3 }] });
  });

  it('sorts on several keys, then skips and limits', async () => {
    const docs = await coll
      .find({ age: { $exists: true } }, { sort: { age: -1, _id: 1 }, projection: { _id: 1 } })
      .toArray();
    expect(docs.map((d) => d._id)).toEqual([3, 1, 2, 4]);
    const page = await coll.find({}, { sort: { _id: -1 }, skip: 1, limit: 2 }).toArray();
    expect(page.map((d) => d._id)).toEqual([4, 3]);
    expect(await coll.find({}).skip(10).toArray()).toEqual([]);
  });

  it('counts with countDocuments (filter, skip, limit) and estimatedDocumentCount', async () => {
    expect(await coll.countDocuments({})).toBe(5);
    expect(await coll.countDocuments({ age: 25 })).toBe(2);
    expect(await coll.countDocuments({}, { skip: 1, limit: 3 })).toBe(3);
    expect(await coll.estimatedDocumentCount()).toBe(5);
    expect(await t.db.collection('empty').countDocuments({})).toBe(0);
  });

  it('distinct returns each value once, unwinding arrays, honouring a filter', async () => {
    expect((await coll.distinct('age')).sort()).toEqual([25, 31, 42]);
    expect((await coll.distinct('tags')).sort()).toEqual(['a', 'b']);
    expect((await coll.distinct('address.city', { age: { $lt: 40 } })).sort()).toEqual(['Bergen', 'Oslo']);
    expect(await coll.distinct('nothing')).toEqual([]);
  });
});

describe('update operators', () => {
  beforeEach(async () => {
    await coll.insertOne({
      _id: 1,
      n: 5,
      name: 'a',
      arr: [1, 2, 3, 4, 3],
      nested: { x: 1, y: 2 },
    } as Document);
  });

  const one = async () => coll.findOne({ _id: 1 });

  it('$set creates nested paths and $unset removes fields', async () => {
    const r = await coll.updateOne(
      { _id: 1 },
      { $set: { 'deep.a.b': 1, name: 'b' }, $unset: { 'nested.y': '' } },
    );
    expect(r.matchedCount).toBe(1);
    expect(r.modifiedCount).toBe(1);
    expect(await one()).toEqual({
      _id: 1,
      n: 5,
      name: 'b',
      arr: [1, 2, 3, 4, 3],
      nested: { x: 1 },
      deep: { a: { b: 1 } },
    });
  });

  it('a no-op update matches but does not modify', async () => {
    const r = await coll.updateOne({ _id: 1 }, { $set: { n: 5 } });
    expect(r.matchedCount).toBe(1);
    expect(r.modifiedCount).toBe(0);
  });

  it('$inc adds (creating the field when missing), $mul multiplies, $min/$max keep the extreme', async () => {
    await coll.updateOne({ _id: 1 }, { $inc: { n: 2, fresh: -3 }, $mul: { 'nested.x': 10 } });
    await coll.updateOne({ _id: 1 }, { $min: { n: 4 }, $max: { 'nested.y': 9 } });
    await coll.updateOne({ _id: 1 }, { $min: { n: 100 }, $max: { 'nested.y': 1, top: 3 } });
    const doc = await one();
    expect(doc).toMatchObject({ n: 4, fresh: -3, nested: { x: 10, y: 9 }, top: 3 });
  });

  it('$rename moves a field, including into and out of embedded documents', async () => {
    await coll.updateOne({ _id: 1 }, { $rename: { name: 'title', 'nested.x': 'moved' } });
    expect(await one()).toEqual({
      _id: 1,
      n: 5,
      title: 'a',
      arr: [1, 2, 3, 4, 3],
      nested: { y: 2 },
      moved: 1,
    });
  });

  it('$push appends, with $each, $position, $sort and $slice modifiers', async () => {
    await updateFirst({ $push: { arr: 9 } });
    expect((await one())?.arr).toEqual([1, 2, 3, 4, 3, 9]);
    await updateFirst({ $push: { arr: { $each: [0, -1], $position: 0 } } });
    expect((await one())?.arr).toEqual([0, -1, 1, 2, 3, 4, 3, 9]);
    await updateFirst({ $push: { arr: { $each: [5], $sort: -1, $slice: 3 } } });
    expect((await one())?.arr).toEqual([9, 5, 4]);
    await updateFirst({ $push: { fresh: 'x' } });
    expect((await one())?.fresh).toEqual(['x']);
  });

  it('$pull removes every matching element, by value or by condition; $pullAll and $pop', async () => {
    await updateFirst({ $pull: { arr: 3 } });
    expect((await one())?.arr).toEqual([1, 2, 4]);
    await updateFirst({ $pull: { arr: { $gte: 2 } } });
    expect((await one())?.arr).toEqual([1]);
    await coll.updateOne({ _id: 1 }, { $set: { arr: [1, 2, 3, 1] } });
    await updateFirst({ $pullAll: { arr: [1, 3] } });
    expect((await one())?.arr).toEqual([2]);
    await coll.updateOne({ _id: 1 }, { $set: { arr: [1, 2, 3] } });
    await coll.updateOne({ _id: 1 }, { $pop: { arr: -1 } });
    expect((await one())?.arr).toEqual([2, 3]);
  });

  it('$addToSet adds only absent values, with $each', async () => {
    await coll.updateOne({ _id: 1 }, { $addToSet: { arr: 2 } });
    expect((await one())?.arr).toEqual([1, 2, 3, 4, 3]);
    await coll.updateOne({ _id: 1 }, { $addToSet: { arr: { $each: [4, 5, 6, 5] } } });
    expect((await one())?.arr).toEqual([1, 2, 3, 4, 3, 5, 6]);
  });

  it('$currentDate sets a date, or a timestamp when asked', async () => {
    const before = Date.now();
    await updateFirst({ $currentDate: { at: true, ts: { $type: 'timestamp' } } });
    const doc = await one();
    expect(doc?.at).toBeInstanceOf(Date);
    expect((doc?.at as Date).getTime()).toBeGreaterThanOrEqual(before - 5_000);
    expect(doc?.ts).toBeInstanceOf(Timestamp);
  });

  it('updates array elements with $, $[] and $[identifier] with arrayFilters', async () => {
    await coll.insertOne({ _id: 2, grades: [80, 95, 90], items: [{ q: 1 }, { q: 5 }] } as Document);
    await coll.updateOne({ _id: 2, grades: 95 }, { $set: { 'grades.$': 96 } });
    expect((await coll.findOne({ _id: 2 }))?.grades).toEqual([80, 96, 90]);
    await coll.updateOne({ _id: 2 }, { $inc: { 'grades.$[]': 1 } });
    expect((await coll.findOne({ _id: 2 }))?.grades).toEqual([81, 97, 91]);
    await coll.updateOne(
      { _id: 2 },
      { $set: { 'grades.$[g]': 100 } },
      { arrayFilters: [{ g: { $gte: 91 } }] },
    );
    expect((await coll.findOne({ _id: 2 }))?.grades).toEqual([81, 100, 100]);
    await coll.updateOne(
      { _id: 2 },
      { $set: { 'items.$[it].big': true } },
      { arrayFilters: [{ 'it.q': { $gt: 2 } }] },
    );
    expect((await coll.findOne({ _id: 2 }))?.items).toEqual([{ q: 1 }, { q: 5, big: true }]);
  });

  it('updateMany updates every match and reports counts', async () => {
    await coll.insertMany([
      { _id: 2, n: 1 },
      { _id: 3, n: 1 },
      { _id: 4, n: 2 },
    ] as Document[]);
    const r = await coll.updateMany({ n: 1 }, { $set: { flag: true } });
    expect(r.matchedCount).toBe(2);
    expect(r.modifiedCount).toBe(2);
    expect(r.upsertedCount).toBe(0);
    expect((await all({ flag: true })).map((d) => d._id)).toEqual([2, 3]);
  });

  it('applies pipeline-style updates', async () => {
    await coll.updateOne({ _id: 1 }, [{ $set: { total: { $add: ['$n', '$nested.x'] } } }, { $unset: 'arr' }]);
    expect(await one()).toEqual({ _id: 1, n: 5, name: 'a', nested: { x: 1, y: 2 }, total: 6 });
  });
});

describe('upsert and replace', () => {
  it('upserts with the filter equality fields and $setOnInsert, reporting the upserted id', async () => {
    const r = await coll.updateOne(
      { sku: 'k1', qty: { $gt: 5 } },
      { $set: { price: 3 }, $setOnInsert: { created: true } },
      { upsert: true },
    );
    expect(r.matchedCount).toBe(0);
    expect(r.modifiedCount).toBe(0);
    expect(r.upsertedCount).toBe(1);
    expect(r.upsertedId).toBeInstanceOf(ObjectId);
    const doc = await coll.findOne({ _id: r.upsertedId! });
    expect(doc).toEqual({ _id: r.upsertedId, sku: 'k1', price: 3, created: true });

    const again = await coll.updateOne(
      { sku: 'k1' },
      { $set: { price: 4 }, $setOnInsert: { created: false } },
      { upsert: true },
    );
    expect(again.matchedCount).toBe(1);
    expect(again.upsertedCount).toBe(0);
    expect(again.upsertedId).toBeNull();
    expect(await coll.findOne({ sku: 'k1' }, { projection: { _id: 0 } })).toEqual({
      sku: 'k1',
      price: 4,
      created: true,
    });
  });

  it('an upsert takes _id from the filter', async () => {
    const r = await coll.updateOne({ _id: 'fixed' as never }, { $inc: { hits: 1 } }, { upsert: true });
    expect(r.upsertedId).toBe('fixed');
    expect(await coll.findOne({ _id: 'fixed' as never })).toEqual({ _id: 'fixed', hits: 1 });
  });

  it('replaceOne replaces the whole document and keeps _id; upserts when asked', async () => {
    await coll.insertOne({ _id: 1, a: 1, b: 2 } as Document);
    const r = await coll.replaceOne({ _id: 1 }, { c: 3 });
    expect(r.matchedCount).toBe(1);
    expect(r.modifiedCount).toBe(1);
    expect(await coll.findOne({ _id: 1 })).toEqual({ _id: 1, c: 3 });
    const up = await coll.replaceOne({ _id: 2 }, { d: 4 }, { upsert: true });
    expect(up.upsertedId).toBe(2);
    expect(await coll.findOne({ _id: 2 })).toEqual({ _id: 2, d: 4 });
  });

  it('refuses to change _id with ImmutableField 66, by update or by replacement', async () => {
    await coll.insertOne({ _id: 1, a: 1 } as Document);
    const byUpdate = await serverError(coll.updateOne({ _id: 1 }, { $set: { _id: 2 } }));
    expect(byUpdate.code).toBe(66);
    expect(byUpdate.codeName).toBe('ImmutableField');
    const byReplace = await serverError(coll.replaceOne({ _id: 1 }, { _id: 3, a: 2 }));
    expect(byReplace.code).toBe(66);
    expect(await all()).toEqual([{ _id: 1, a: 1 }]);
  });
});

describe('deletes', () => {
  beforeEach(async () => {
    await coll.insertMany([
      { _id: 1, k: 'a' },
      { _id: 2, k: 'b' },
      { _id: 3, k: 'b' },
      { _id: 4, k: 'c' },
    ] as Document[]);
  });

  it('deleteOne removes one match, deleteMany every match', async () => {
    expect((await coll.deleteOne({ k: 'b' })).deletedCount).toBe(1);
    expect(await coll.countDocuments({ k: 'b' })).toBe(1);
    expect((await coll.deleteMany({ k: { $in: ['b', 'c'] } })).deletedCount).toBe(2);
    expect((await coll.deleteOne({ k: 'zzz' })).deletedCount).toBe(0);
    expect(await all()).toEqual([{ _id: 1, k: 'a' }]);
    expect((await coll.deleteMany({})).deletedCount).toBe(1);
    expect(await coll.countDocuments()).toBe(0);
  });
});
