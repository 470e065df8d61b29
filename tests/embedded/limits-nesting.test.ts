/**
 * How deeply a stored document may nest, through the official driver. MongoDB documents that it
 * supports 100 levels of nesting, each object or array adding one; mongod stores up to 180 (its
 * maxBSONDepth, 200, less 20 levels kept for its own wrappers) and refuses a document with a field
 * deeper than that with Overflow (45): an insert with "cannot insert document because it exceeds 180
 * levels of nesting", an update with "Document exceeds maximum nesting depth of 180". Top-level fields
 * are at level 1, and an empty object or array adds no level.
 *
 * Every refusal changes nothing, and the server answers a ping after each.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MongoServerError, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { serverError } from '../helpers/serverError.js';

const MAX_DEPTH = 180;
const OVERFLOW = 45;

let t: TestDb;

interface Doc {
  _id: number | string;
  [field: string]: unknown;
}

const collection = (name: string) => t.db.collection<Doc>(name);

/** A value that puts a field at `levels` when it is a top-level field's value: { a: { a: ... leaf } }. */
function nest(levels: number, leaf: unknown = 1, wrap: (v: unknown) => unknown = (v) => ({ a: v })): unknown {
  let v = leaf;
  for (let i = 1; i < levels; i++) v = wrap(v);
  return v;
}

/** A document whose deepest field is at `levels`. */
function docAt(id: number, levels: number, leaf?: unknown): Doc {
  return { _id: id, a: nest(levels, leaf) };
}

function expectInsertTooDeep(err: MongoServerError): void {
  expect(err.code).toBe(OVERFLOW);
  expect(err.message).toContain(`cannot insert document because it exceeds ${MAX_DEPTH} levels of nesting`);
}

function expectUpdateTooDeep(err: MongoServerError): void {
  expect(err.code).toBe(OVERFLOW);
  if (t.backend === 'embedded')
    expect(err.message).toContain(`Document exceeds maximum nesting depth of ${MAX_DEPTH}`);
}

async function expectServing(): Promise<void> {
  expect(await t.db.command({ ping: 1 })).toMatchObject({ ok: 1 });
}

beforeAll(async () => {
  t = await openTestDb('nesting');
});

afterAll(async () => {
  await t.close();
});

describe('documents inserted', () => {
  it('reports maxBSONDepth 200 from getParameter', async () => {
    const reply = await t.db.admin().command({ getParameter: 1, maxBSONDepth: 1 });
    expect(reply.maxBSONDepth).toBe(200);
  });

  it('stores documents nested 100 and 180 levels and reads them back whole', async () => {
    const coll = collection('insert_ok');
    for (const levels of [100, MAX_DEPTH]) {
      await coll.insertOne(docAt(levels, levels, 'leaf'));
      expect(await coll.findOne({ _id: levels })).toEqual(docAt(levels, levels, 'leaf'));
    }
  });

  it('refuses a document with a field at level 181 with Overflow, storing nothing', async () => {
    const coll = collection('insert_deep');
    expectInsertTooDeep(await serverError(coll.insertOne(docAt(1, MAX_DEPTH + 1))));
    expect(await coll.countDocuments()).toBe(0);
    await expectServing();
  });

  it('counts arrays as levels, and an empty object or array as none', async () => {
    const coll = collection('insert_kinds');
    const arrays = (levels: number, leaf: unknown = 1): unknown => nest(levels, leaf, (v) => [v]);
    await coll.insertOne({ _id: 'arrays', a: arrays(MAX_DEPTH) });
    expectInsertTooDeep(await serverError(coll.insertOne({ _id: 'arrays+1', a: arrays(MAX_DEPTH + 1) })));
    // An empty object or array where a field at level 181 would be.
    await coll.insertOne({ _id: 'empty object', a: nest(MAX_DEPTH, {}) });
    await coll.insertOne({ _id: 'empty array', a: nest(MAX_DEPTH, []) });
    expectInsertTooDeep(
      await serverError(coll.insertOne({ _id: 'non-empty', a: nest(MAX_DEPTH, { b: null }) })),
    );
    expect((await coll.find({}, { projection: { _id: 1 } }).toArray()).map((d) => d._id).sort()).toEqual([
      'arrays',
      'empty array',
      'empty object',
    ]);
  });

  it('an ordered batch keeps the document before a too-deep one and reports index 1', async () => {
    const coll = collection('insert_batch');
    const err = await serverError(
      coll.insertMany([{ _id: 0 }, docAt(1, MAX_DEPTH + 1), { _id: 2 }], { ordered: true }),
    );
    expect(err.code).toBe(OVERFLOW);
    const writeErrors = (err as MongoServerError & { writeErrors?: Array<{ index: number; code: number }> })
      .writeErrors;
    expect(writeErrors?.map((e) => [e.index, e.code])).toEqual([[1, OVERFLOW]]);
    expect(await coll.find({}).toArray()).toEqual([{ _id: 0 }]);
  });

  it('refuses a document nested 1000 levels, and keeps serving', async () => {
    const coll = collection('insert_very_deep');
    expectInsertTooDeep(await serverError(coll.insertOne(docAt(1, 1000))));
    expect(await coll.countDocuments()).toBe(0);
    await expectServing();
  });
});

describe('documents updated', () => {
  it('refuses updateOne whose result nests past 180 levels, and accepts one reaching 180', async () => {
    const coll = collection('update');
    await coll.insertOne({ _id: 1, v: 0 });
    expectUpdateTooDeep(await serverError(coll.updateOne({ _id: 1 }, { $set: { a: nest(MAX_DEPTH + 1) } })));
    expect(await coll.findOne({ _id: 1 })).toEqual({ _id: 1, v: 0 });
    await coll.updateOne({ _id: 1 }, { $set: { a: nest(MAX_DEPTH) } });
    expect(await coll.findOne({ _id: 1 })).toEqual({ _id: 1, v: 0, a: nest(MAX_DEPTH) });
    await expectServing();
  });

  it('re-checks what an update changes in a large document: deeper inside a field it keeps, or a new field', async () => {
    // Over the size at which the nesting is walked at all, with a field already at level 180.
    const coll = collection('update_large');
    const start = { _id: 1, a: nest(MAX_DEPTH), pad: 'x'.repeat(4000), v: 0 };
    await coll.insertOne(start);
    await coll.updateOne({ _id: 1 }, { $inc: { v: 1 } } as Document);
    expectUpdateTooDeep(await serverError(coll.updateOne({ _id: 1 }, { $set: { b: nest(MAX_DEPTH + 1) } })));
    // The path to the deepest 'a', which the update turns into a document with a field one level further.
    const deepest = Array.from({ length: MAX_DEPTH }, () => 'a').join('.');
    expectUpdateTooDeep(await serverError(coll.updateOne({ _id: 1 }, { $set: { [deepest]: { b: 1 } } })));
    expectUpdateTooDeep(
      await serverError(coll.updateOne({ _id: 1 }, { $set: { v: 2, pad: nest(MAX_DEPTH + 1, 'x') } })),
    );
    expect(await coll.findOne({ _id: 1 })).toEqual({ ...start, v: 1 });
    const fits: Document = { $set: { [deepest]: 2, b: nest(MAX_DEPTH) } };
    await coll.updateOne({ _id: 1 }, fits);
    expect(await coll.findOne({ _id: 1 })).toEqual({
      ...start,
      a: nest(MAX_DEPTH, 2),
      b: nest(MAX_DEPTH),
      v: 1,
    });
    await expectServing();
  });

  it('refuses replaceOne with a too-deep replacement, leaving the document unchanged', async () => {
    const coll = collection('replace');
    await coll.insertOne({ _id: 1, v: 0 });
    expectUpdateTooDeep(await serverError(coll.replaceOne({ _id: 1 }, { a: nest(MAX_DEPTH + 1) })));
    expect(await coll.findOne({ _id: 1 })).toEqual({ _id: 1, v: 0 });
  });

  it('refuses a too-deep upsert and findOneAndUpdate, changing nothing', async () => {
    const coll = collection('upsert');
    await coll.insertOne({ _id: 1, v: 0 });
    const deep = { $set: { a: nest(MAX_DEPTH + 1) } };
    expect((await serverError(coll.updateOne({ _id: 2 }, deep, { upsert: true }))).code).toBe(OVERFLOW);
    expectUpdateTooDeep(await serverError(coll.findOneAndUpdate({ _id: 1 }, deep)));
    expect((await serverError(coll.findOneAndUpdate({ _id: 3 }, deep, { upsert: true }))).code).toBe(
      OVERFLOW,
    );
    expect(await coll.find({}).toArray()).toEqual([{ _id: 1, v: 0 }]);
    await expectServing();
  });
});
