/**
 * Indexes: unique (DuplicateKey 11000 with keyPattern/keyValue), compound unique, partial and sparse
 * unique indexes, listIndexes/dropIndexes, and TTL expiry.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { serverError } from '../helpers/serverError.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let coll: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('conf_idx');
  coll = t.db.collection('ix');
});

afterEach(async () => {
  await t.close();
});

describe('unique indexes', () => {
  it('rejects a duplicate with 11000, naming keyPattern and keyValue', async () => {
    expect(await coll.createIndex({ email: 1 }, { unique: true })).toBe('email_1');
    await coll.insertOne({ email: 'a@x' });
    const err = await serverError(coll.insertOne({ email: 'a@x' }));
    expect(err.code).toBe(11000);
    expect(err.keyPattern).toEqual({ email: 1 });
    expect(err.keyValue).toEqual({ email: 'a@x' });
    expect(await coll.countDocuments()).toBe(1);
  });

  it('rejects an update that would create a duplicate', async () => {
    await coll.createIndex({ email: 1 }, { unique: true });
    await coll.insertMany([
      { _id: 1, email: 'a' },
      { _id: 2, email: 'b' },
    ] as Document[]);
    const err = await serverError(coll.updateOne({ _id: 2 }, { $set: { email: 'a' } }));
    expect(err.code).toBe(11000);
    expect((await coll.findOne({ _id: 2 }))?.email).toBe('b');
  });

  it('refuses to build a unique index over existing duplicates', async () => {
    await coll.insertMany([{ k: 1 }, { k: 1 }]);
    const err = await serverError(coll.createIndex({ k: 1 }, { unique: true }));
    expect(err.code).toBe(11000);
  });

  it('treats a missing field as null: a non-sparse unique index allows one document without it', async () => {
    await coll.createIndex({ nick: 1 }, { unique: true });
    await coll.insertOne({ a: 1 });
    const err = await serverError(coll.insertOne({ a: 2 }));
    expect(err.code).toBe(11000);
    expect(err.keyValue).toEqual({ nick: null });
  });

  it('compound unique: only the full key combination must be unique', async () => {
    await coll.createIndex({ a: 1, b: -1 }, { unique: true });
    await coll.insertMany([
      { a: 1, b: 1 },
      { a: 1, b: 2 },
      { a: 2, b: 1 },
    ]);
    const err = await serverError(coll.insertOne({ a: 1, b: 2 }));
    expect(err.code).toBe(11000);
    expect(err.keyPattern).toEqual({ a: 1, b: -1 });
    expect(err.keyValue).toEqual({ a: 1, b: 2 });
  });

  it('partial unique: duplicates are allowed outside the partialFilterExpression', async () => {
    await coll.createIndex({ email: 1 }, { unique: true, partialFilterExpression: { active: true } });
    await coll.insertMany([
      { email: 'a', active: false },
      { email: 'a', active: false },
      { email: 'a' },
      { email: 'a', active: true },
    ]);
    const err = await serverError(coll.insertOne({ email: 'a', active: true }));
    expect(err.code).toBe(11000);
    expect(await coll.countDocuments({ email: 'a' })).toBe(4);
  });

  it('sparse unique: documents missing the field may repeat, present values may not', async () => {
    await coll.createIndex({ nick: 1 }, { unique: true, sparse: true });
    await coll.insertMany([{ a: 1 }, { a: 2 }, { nick: 'n' }]);
    const err = await serverError(coll.insertOne({ nick: 'n' }));
    expect(err.code).toBe(11000);
    expect(await coll.countDocuments()).toBe(3);
  });
});

describe('listIndexes and dropIndexes', () => {
  it('lists the _id index and created indexes with their options', async () => {
    await coll.insertOne({ a: 1 });
    await coll.createIndex({ a: 1 });
    await coll.createIndex({ b: 1, c: -1 }, { name: 'bc', unique: true, sparse: true });
    await coll.createIndex({ d: 1 }, { partialFilterExpression: { d: { $exists: true } } });
    const indexes = await coll.listIndexes().toArray();
    const byName = new Map(indexes.map((i) => [i.name as string, i]));
    expect([...byName.keys()].sort()).toEqual(['_id_', 'a_1', 'bc', 'd_1']);
    expect(byName.get('_id_')?.key).toEqual({ _id: 1 });
    expect(byName.get('a_1')?.key).toEqual({ a: 1 });
    expect(byName.get('bc')).toMatchObject({ key: { b: 1, c: -1 }, unique: true, sparse: true });
    expect(byName.get('d_1')?.partialFilterExpression).toEqual({ d: { $exists: true } });
    expect(byName.get('a_1')?.unique).toBeUndefined();
  });

  it('creating an identical index again is a no-op', async () => {
    await coll.createIndex({ a: 1 });
    await coll.createIndex({ a: 1 });
    expect((await coll.listIndexes().toArray()).length).toBe(2);
  });

  it('drops one index by name, then all but _id_', async () => {
    await coll.createIndex({ a: 1 });
    await coll.createIndex({ b: 1 });
    await coll.createIndex({ c: 1 });
    await coll.dropIndex('a_1');
    expect((await coll.listIndexes().toArray()).map((i) => i.name).sort()).toEqual(['_id_', 'b_1', 'c_1']);
    await coll.dropIndexes();
    expect((await coll.listIndexes().toArray()).map((i) => i.name)).toEqual(['_id_']);
  });

  it('dropping an unknown index fails with IndexNotFound 27', async () => {
    await coll.insertOne({ a: 1 });
    const err = await serverError(coll.dropIndex('nope_1'));
    expect(err.code).toBe(27);
    expect(err.codeName).toBe('IndexNotFound');
  });

  it('listIndexes on a missing collection fails with NamespaceNotFound 26', async () => {
    const err = await serverError(t.db.collection('missing').listIndexes().toArray());
    expect(err.code).toBe(26);
  });
});

describe('TTL indexes', () => {
  it('removes documents whose date is past expireAfterSeconds, leaving others', async () => {
    await coll.createIndex({ expireAt: 1 }, { expireAfterSeconds: 0 });
    const ttl = (await coll.listIndexes().toArray()).find((i) => i.name === 'expireAt_1');
    expect(ttl?.expireAfterSeconds).toBe(0);

    const past = new Date(Date.now() - 60_000);
    const future = new Date(Date.now() + 3_600_000);
    await coll.insertMany([
      { _id: 'old', expireAt: past },
      { _id: 'later', expireAt: future },
      { _id: 'noDate', expireAt: 'not a date' },
      { _id: 'none' },
    ] as Document[]);

    // MongoDB's TTL monitor runs every 60 seconds; wait for the sweep, bounded.
    const deadline = Date.now() + 75_000;
    while ((await coll.countDocuments({ _id: 'old' } as Document)) > 0) {
      if (Date.now() > deadline) throw new Error('the expired document was not removed within 75 s');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const left = (await coll.find({}, { sort: { _id: 1 } }).toArray()).map((d) => d._id);
    expect(left).toEqual(['later', 'noDate', 'none']);
  }, 90_000);
});
