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
