/**
 * Single-document writes whose filter is exactly `{_id: v}` (the shape of jobd's bulk marks and
 * restores): they find their document directly, and keep every MongoDB rule the general path keeps —
 * equality across numeric types, collation, hints, upserts, arrayFilters, the positional operator,
 * change events.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Double, Long, ObjectId, type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let c: Collection<Document>;
const oid = new ObjectId();

beforeAll(async () => {
  t = await openTestDb('idwrites');
  c = t.db.collection('byid');
  await c.insertMany([
    { _id: new Double(2), v: 0 } as Document,
    { _id: Long.fromNumber(3), v: 0 } as Document,
    { _id: 'A', v: 0 },
    { _id: oid, v: 0 } as Document,
    { _id: 'arr', v: [1, 2, 3] },
  ]);
});

afterAll(async () => {
  await t.close();
});

describe('writes by exact _id', () => {
  it('matches numbers of every type by value', async () => {
    expect((await c.updateOne({ _id: 2 } as Document, { $inc: { v: 1 } })).modifiedCount).toBe(1);
    expect((await c.updateOne({ _id: 3 } as Document, { $inc: { v: 1 } })).modifiedCount).toBe(1);
    expect((await c.findOne({ _id: Long.fromNumber(2) } as Document))?.v).toBe(1);
    expect((await c.findOne({ _id: new Double(3) } as Document))?.v).toBe(1);
  });

  it('compares strings binary without a collation, and under the collation when one is given', async () => {
    expect((await c.updateOne({ _id: 'a' } as Document, { $set: { v: 1 } })).matchedCount).toBe(0);
    const r = await c.updateOne(
      { _id: 'a' } as Document,
      { $set: { v: 2 } },
      { collation: { locale: 'en', strength: 2 } },
    );
    expect(r.modifiedCount).toBe(1);
    expect((await c.findOne({ _id: 'A' } as Document))?.v).toBe(2);
  });

  it('still refuses a hint naming no index', async () => {
    await expect(c.updateOne({ _id: 'A' } as Document, { $set: { v: 3 } }, { hint: 'nope' })).rejects.toThrow(
      /hint provided does not correspond to an existing index/,
    );
    await expect(c.deleteOne({ _id: 'A' } as Document, { hint: 'nope' })).rejects.toThrow(
      /hint provided does not correspond to an existing index/,
    );
    expect((await c.findOne({ _id: 'A' } as Document))?.v).toBe(2);
  });

  it('upserts a missing _id, and reports a present one as matched', async () => {
    const up = await c.updateOne({ _id: 'new' } as Document, { $set: { v: 7 } }, { upsert: true });
    expect(up.upsertedId).toBe('new');
    expect(await c.findOne({ _id: 'new' } as Document)).toEqual({ _id: 'new', v: 7 });
    const again = await c.updateOne({ _id: 'new' } as Document, { $set: { v: 7 } }, { upsert: true });
    expect([again.matchedCount, again.modifiedCount, again.upsertedCount]).toEqual([1, 0, 0]);
  });

  it('applies arrayFilters, and refuses the positional operator the filter cannot serve', async () => {
    await c.updateOne(
      { _id: 'arr' } as Document,
      { $set: { 'v.$[e]': 0 } },
      { arrayFilters: [{ e: { $gt: 1 } }] },
    );
    expect((await c.findOne({ _id: 'arr' } as Document))?.v).toEqual([1, 0, 0]);
    await expect(c.updateOne({ _id: 'arr' } as Document, { $set: { 'v.$': 9 } })).rejects.toThrow(
      /array field for '\.\$'|positional operator/,
    );
  });

  it('deletes by ObjectId with its change event, and finds nothing afterwards', async () => {
    const stream = c.watch([], { maxAwaitTimeMS: 50 });
    // Opens the stream (nothing to read yet), so the delete below comes after its start.
    expect(await stream.tryNext()).toBeNull();
    expect((await c.deleteOne({ _id: oid } as Document)).deletedCount).toBe(1);
    const ev = (await stream.next()) as Document;
    expect(ev.operationType).toBe('delete');
    expect((ev.documentKey as Document)._id).toEqual(oid);
    await stream.close();
    expect(await c.findOne({ _id: oid } as Document)).toBeNull();
    expect((await c.deleteOne({ _id: oid } as Document)).deletedCount).toBe(0);
  });
});

/**
 * Writes whose filter names an _id beside other conditions (jobd's guarded writes: `{_id, state,
 * 'lease.token'}`): the _id finds the one candidate, and the whole filter still decides whether it matches.
 */
describe('writes by _id with more conditions', () => {
  interface Guarded {
    _id: string | number;
    state: string;
    lease: { token: string } | null;
    tags?: string[];
    n: number;
  }
  let g: Collection<Guarded>;

  beforeAll(async () => {
    g = t.db.collection('guarded');
    await g.insertMany([
      { _id: 'j1', state: 'running', lease: { token: 't1' }, tags: ['a', 'b'], n: 0 },
      { _id: 7, state: 'queued', lease: null, n: 0 },
    ]);
  });

  it('changes the document only when every other condition holds', async () => {
    const stale = await g.updateOne({ _id: 'j1', state: 'running', 'lease.token': 't0' }, { $inc: { n: 1 } });
    expect([stale.matchedCount, stale.modifiedCount]).toEqual([0, 0]);
    const held = await g.updateOne({ _id: 'j1', state: 'running', 'lease.token': 't1' }, { $inc: { n: 1 } });
    expect([held.matchedCount, held.modifiedCount]).toEqual([1, 1]);
    // Array elements, $or and $expr are the matcher's, as on any other plan.
    expect(
      (await g.updateOne({ _id: 'j1', tags: 'b', $or: [{ n: 1 }, { n: 5 }] }, { $inc: { n: 1 } }))
        .matchedCount,
    ).toBe(1);
    expect(
      (await g.updateOne({ _id: 'j1', $expr: { $gt: ['$n', 10] } }, { $inc: { n: 1 } })).matchedCount,
    ).toBe(0);
    expect((await g.updateOne({ _id: 7.0, state: 'queued' }, { $set: { n: 3 } })).matchedCount).toBe(1);
    expect((await g.deleteOne({ _id: 7, state: 'running' })).deletedCount).toBe(0);
    expect(await g.find({}, { sort: { n: 1 } }).toArray()).toEqual([
      { _id: 'j1', state: 'running', lease: { token: 't1' }, tags: ['a', 'b'], n: 2 },
      { _id: 7, state: 'queued', lease: null, n: 3 },
    ]);
  });

  it('an upsert whose conditions fail on an existing _id is a duplicate key, and changes nothing', async () => {
    const err = await g.updateOne({ _id: 'j1', state: 'queued' }, { $set: { n: 99 } }, { upsert: true }).then(
      () => undefined,
      (e: unknown) => e as { code?: number },
    );
    expect(err?.code).toBe(11000);
    expect((await g.findOne({ _id: 'j1' }))?.n).toBe(2);
    const found = await g.findOneAndUpdate({ _id: 'j1', 'lease.token': 't9' }, { $set: { n: 99 } });
    expect(found).toBeNull();
  });

  it('explains the point lookup as IDHACK, counting the document examined even when it does not match', async () => {
    const plan = (await g.find({ _id: 'j1', state: 'queued' }).explain('executionStats')) as Document;
    expect(JSON.stringify(plan.queryPlanner)).toContain('IDHACK');
    expect((plan.executionStats as Document).nReturned).toBe(0);
    expect((plan.executionStats as Document).totalDocsExamined).toBe(1);
  });
});
