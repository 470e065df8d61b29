/**
 * The direct update path stores an update's own $set/$min/$max values rather than a copy of them, so
 * the documents of one updateMany share those values (as versions of one document share the fields an
 * update left alone). Stored documents are never changed in place, so a later update of one of them
 * (a nested $set, $inc, $unset, $push, a pipeline, a replacement) changes that document only. Every
 * answer here is what MongoDB gives, which copies each value into each document.
 *
 * Also: a date at the deepest stored level is accepted and one level deeper refused (the depth walk
 * stops at a date without looking into it); an updateMany whose options are reused from one document
 * to the next still honours bypassDocumentValidation and measures each document's size on its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { serverError } from '../helpers/serverError.js';

let t: TestDb;
let n = 0;

beforeAll(async () => {
  t = await openTestDb('write_sharing');
});

afterAll(async () => {
  await t?.close();
});

/** A fresh collection with documents 1..3, each { _id, k }. */
async function fresh(): Promise<Collection<Document>> {
  const coll = t.db.collection<Document>(`c${++n}`);
  await coll.insertMany([1, 2, 3].map((i) => ({ _id: i as never, k: i })));
  return coll;
}

const all = async (coll: Collection<Document>): Promise<Document[]> =>
  coll.find({}, { sort: { _id: 1 } }).toArray();

const at = new Date('2026-01-02T03:04:05.678Z');

describe('values an updateMany stores in many documents', () => {
  it('a nested $set, $inc and $unset in one document leave the others as they were', async () => {
    const coll = await fresh();
    await coll.updateMany({}, { $set: { lease: { token: 't', at, tags: ['a', null] }, when: at } });
    await coll.updateOne({ _id: 1 as never }, { $set: { 'lease.token': 'u' }, $inc: { 'lease.n': 1 } });
    await coll.updateOne({ _id: 2 as never }, { $unset: { 'lease.at': '' } });
    expect(await all(coll)).toEqual([
      { _id: 1, k: 1, lease: { token: 'u', at, tags: ['a', null], n: 1 }, when: at },
      { _id: 2, k: 2, lease: { token: 't', tags: ['a', null] }, when: at },
      { _id: 3, k: 3, lease: { token: 't', at, tags: ['a', null] }, when: at },
    ]);
  });

  it('array operators, positional paths and pipelines on one document leave the others as they were', async () => {
    const coll = await fresh();
    await coll.updateMany({}, { $set: { tags: ['a', { x: 1 }], o: { p: { q: null } } } });
    await coll.updateOne({ _id: 1 as never }, { $push: { tags: 'b' as never } });
    await coll.updateOne({ _id: 2 as never }, { $set: { 'tags.1.x': 2, 'o.p.q': 'set' } });
    await coll.updateOne({ _id: 3 as never }, [{ $set: { 'o.p.r': 1 } }]);
    expect(await all(coll)).toEqual([
      { _id: 1, k: 1, tags: ['a', { x: 1 }, 'b'], o: { p: { q: null } } },
      { _id: 2, k: 2, tags: ['a', { x: 2 }], o: { p: { q: 'set' } } },
      { _id: 3, k: 3, tags: ['a', { x: 1 }], o: { p: { q: null, r: 1 } } },
    ]);
  });

  it('$min and $max values, and a replacement of one document, leave the others as they were', async () => {
    const coll = await fresh();
    await coll.updateMany({}, { $max: { m: { v: 1 } }, $min: { d: at } });
    await coll.updateOne({ _id: 1 as never }, { $set: { 'm.v': 2 } });
    await coll.replaceOne({ _id: 2 as never }, { m: { v: 3 } });
    expect(await all(coll)).toEqual([
      { _id: 1, k: 1, m: { v: 2 }, d: at },
      { _id: 2, m: { v: 3 } },
      { _id: 3, k: 3, m: { v: 1 }, d: at },
    ]);
  });

  it('an update of one document reports only its own change to a change stream', async () => {
    const coll = await fresh();
    await coll.updateMany({}, { $set: { lease: { token: 't', n: null } } });
    const stream = coll.watch([], { maxAwaitTimeMS: 200 });
    try {
      await stream.tryNext(); // opens the stream
      await coll.updateOne({ _id: 2 as never }, { $set: { 'lease.n': 5 }, $unset: { 'lease.token': '' } });
      await coll.updateOne({ _id: 3 as never }, { $set: { lease: { token: 't', n: null } } }); // no change
      await coll.updateOne({ _id: 3 as never }, { $set: { 'lease.token': 'v' } });
      const seen: Document[] = [];
      const deadline = Date.now() + 10_000;
      while (seen.length < 2 && Date.now() < deadline) {
        const c = (await stream.tryNext()) as Document | null;
        if (c) seen.push({ id: c.documentKey?._id, u: c.updateDescription });
      }
      expect(seen).toEqual([
        {
          id: 2,
          u: { updatedFields: { 'lease.n': 5 }, removedFields: ['lease.token'], truncatedArrays: [] },
        },
        { id: 3, u: { updatedFields: { 'lease.token': 'v' }, removedFields: [], truncatedArrays: [] } },
      ]);
    } finally {
      await stream.close();
    }
    expect(await all(coll)).toEqual([
      { _id: 1, k: 1, lease: { token: 't', n: null } },
      { _id: 2, k: 2, lease: { n: 5 } },
      { _id: 3, k: 3, lease: { token: 'v', n: null } },
    ]);
  });
});

/** { a: { a: ... leaf } } with the leaf at `levels` when it is a top-level field's value. */
function nest(levels: number, leaf: unknown): unknown {
  let v = leaf;
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

describe('limits on the direct update path', () => {
  it('a date at the deepest stored level is stored; one level deeper is refused', async () => {
    const coll = await fresh();
    await coll.insertOne({ _id: 10 as never, a: nest(180, at) });
    expect((await serverError(coll.insertOne({ _id: 11 as never, a: nest(181, at) }))).code).toBe(45);
    await coll.updateMany({ _id: { $lte: 2 } as never }, { $set: { b: nest(180, at) } });
    expect((await serverError(coll.updateMany({}, { $set: { c: nest(181, at) } }))).code).toBe(45);
    expect(await coll.countDocuments({ b: { $exists: true } })).toBe(2);
    expect(await coll.countDocuments({ c: { $exists: true } })).toBe(0);
  });

  it('an updateMany honours bypassDocumentValidation for every document', async () => {
    const coll = t.db.collection<Document>(`c${++n}`);
    await t.db.createCollection(coll.collectionName, { validator: { v: { $type: 'int' } } });
    await coll.insertMany([1, 2, 3].map((i) => ({ _id: i as never, v: i })));
    expect((await serverError(coll.updateMany({}, { $set: { v: 'x' } }))).code).toBe(121);
    const r = await coll.updateMany({}, { $set: { v: 'y' } }, { bypassDocumentValidation: true });
    expect(r.modifiedCount).toBe(3);
    expect((await serverError(coll.updateMany({}, { $set: { v: 'z' } }))).code).toBe(121);
    expect((await all(coll)).map((d) => d.v)).toEqual(['y', 'y', 'y']);
  });

  it('an updateMany measures each document: only the one it would take past 16 MiB is refused', async () => {
    const coll = t.db.collection<Document>(`c${++n}`);
    const mb = 'x'.repeat(1024 * 1024);
    await coll.insertMany([
      { _id: 1 as never, big: [] },
      { _id: 2 as never, big: Array.from({ length: 15 }, () => mb) },
    ]);
    // Document 1 grows to about 1 MiB and stays updated (a multi-update is not atomic); document 2
    // would pass 16 MiB and is refused.
    const err = await serverError(coll.updateMany({}, { $set: { extra: `${mb}${mb.slice(0, 200)}` } }));
    expect(err.code).toBe(17419);
    expect((await all(coll)).map((d) => [d._id, 'extra' in d])).toEqual([
      [1, true],
      [2, false],
    ]);
    await coll.updateMany({ _id: 2 as never }, { $set: { extra: 'small' } });
    expect((await coll.findOne({ _id: 2 as never }))?.extra).toBe('small');
  });
});
