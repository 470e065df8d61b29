/**
 * An updateMany works out an operator update's direct path once (planSimpleUpdate) and applies it to
 * each document (applyUpdateReporting with the plan). That must give, for every document, exactly what
 * the general path gives without a plan: the same new version (field order and BSON types included, so
 * compared as BSON bytes), the same `direct` flag, the same error; and it must leave the stored version
 * untouched. Checked here over updates × awkward documents (arrays and non-documents on a path,
 * non-numbers where $inc or $mul applies, missing parents, Double/Long/Decimal targets, int32 overflow),
 * then over the wire: an updateMany against the same statements sent as one updateOne per document.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BSON, Decimal128, Double, Long, type Document } from 'bson';
import { type Collection, type Document as DriverDocument } from 'mongodb';
import { applyUpdateReporting, planSimpleUpdate, type UpdateSpec } from '../../src/embedded/update.js';
import { deepClone } from '../../src/embedded/bsonOrder.js';
import { openTestDb, type TestDb } from '../helpers/db.js';

const at = new Date('2026-01-02T03:04:05.678Z');

const DOCS: Document[] = [
  { _id: 1 },
  { _id: 2, a: 1, b: 'x', n: { x: 1, y: [1, 2] }, c: 5 },
  { _id: 3, a: 'str', n: 'not a document', c: null },
  { _id: 4, a: [1, 2], n: [{ x: 1 }], c: new Double(2) },
  { _id: 5, a: Long.fromNumber(7), n: { x: 'str' }, c: Decimal128.fromString('1.5') },
  { _id: 6, a: 2147483647, n: { x: null, z: { deep: true } }, c: 1.5, lease: { token: 't', at } },
  { _id: 7, a: at, n: null, c: -0 },
  { b: 'no _id first', _id: 8, a: 3 },
];

/** Updates a plan is made for. */
const PLANNED: Document[] = [
  { $set: { a: 1 } },
  { $set: { 'n.x': 2, 'n.w.v': 3, state: 'running', lease: { token: 'u', at } } },
  { $inc: { a: 1, c: 2 }, $set: { b: 'y' } },
  { $inc: { 'n.x': 1 } },
  { $inc: { a: 1.5 } },
  { $mul: { c: 3, 'n.x': 2 } },
  { $inc: { a: Long.fromNumber(1) } },
  { $unset: { a: '', 'n.x': '', 'missing.path': '' } },
  { $min: { a: 0, d: at }, $max: { c: 100, 'n.m': { v: 1 } } },
  { $set: { z: 1 }, $setOnInsert: { onlyOnInsert: 1 } },
  { $set: { 'lease.token': 'v' }, $inc: { attempts: 1, seq: 1 } },
  { $set: {}, $inc: { a: 1 } },
  { $set: { b: 'b', a: 'a', 'n.b': 1, 'n.a': 2 } },
];

/** Updates the general path alone takes: no plan is made for them. */
const UNPLANNED: UpdateSpec[] = [
  { $push: { a: 1 } },
  { $set: { 'a.0': 1 } },
  { $set: { 'a.$': 1 } },
  { $set: { _id: 1 } },
  { $set: { '_id.x': 1 } },
  { $currentDate: { d: true } },
  { $addToSet: { a: 1 } },
  { $rename: { a: 'b' } },
  { $inc: { a: 'x' } },
  { a: 1 },
  {},
  [{ $set: { a: 1 } }],
];

type Outcome = { bytes: string; direct: boolean } | { error: string };

function run(doc: Document, u: UpdateSpec, planned: boolean): Outcome {
  const own = deepClone(u);
  const plan = planned ? planSimpleUpdate(own) : undefined;
  if (planned) expect(plan).toBeDefined();
  try {
    const { doc: next, direct } = applyUpdateReporting(doc, own, { filter: {}, variables: {} }, plan);
    return { bytes: Buffer.from(BSON.serialize(next)).toString('hex'), direct };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { error: `${String(e.code)} ${String(e.message)}` };
  }
}

describe('planSimpleUpdate', () => {
  it('is made for operator updates of the direct path and not for the others', () => {
    for (const u of PLANNED) expect(planSimpleUpdate(u), JSON.stringify(u)).toBeDefined();
    for (const u of UNPLANNED) expect(planSimpleUpdate(u), JSON.stringify(u)).toBeUndefined();
  });

  it('gives every document what the general path gives, and leaves the stored version as it was', () => {
    let fellBack = 0;
    let refused = 0;
    for (const u of PLANNED) {
      for (const doc of DOCS) {
        const before = Buffer.from(BSON.serialize(doc)).toString('hex');
        const general = run(doc, u, false);
        const planned = run(doc, u, true);
        expect(planned, `${JSON.stringify(u)} on ${before}`).toEqual(general);
        expect(Buffer.from(BSON.serialize(doc)).toString('hex')).toBe(before);
        if ('error' in general) refused++;
        else if (!general.direct) fellBack++;
      }
    }
    // The matrix reaches both of the per-document exits from the plan.
    expect(refused).toBeGreaterThan(0);
    expect(fellBack).toBeGreaterThan(0);
  });

  it('copies an embedded document it changes, so documents sharing it stay apart', () => {
    const shared = { token: 't', n: 1 };
    const a = { _id: 1, lease: shared };
    const b = { _id: 2, lease: shared };
    const u = { $set: { 'lease.token': 'u' }, $inc: { 'lease.n': 1 } };
    const plan = planSimpleUpdate(u);
    const na = applyUpdateReporting(a, u, {}, plan).doc;
    const nb = applyUpdateReporting(b, u, {}, plan).doc;
    expect(na).toEqual({ _id: 1, lease: { token: 'u', n: 2 } });
    expect(nb).toEqual({ _id: 2, lease: { token: 'u', n: 2 } });
    expect(na.lease).not.toBe(nb.lease);
    expect(shared).toEqual({ token: 't', n: 1 });
  });
});

describe('an updateMany over the wire', () => {
  let t: TestDb;
  let n = 0;

  beforeAll(async () => {
    t = await openTestDb('update_plan');
  });

  afterAll(async () => {
    await t?.close();
  });

  async function twin(): Promise<[Collection<DriverDocument>, Collection<DriverDocument>]> {
    n++;
    const many = t.db.collection<DriverDocument>(`many${n}`);
    const one = t.db.collection<DriverDocument>(`one${n}`);
    const docs = DOCS.filter((d) => d._id !== 8).map((d) => deepClone(d));
    await many.insertMany(docs.map((d) => deepClone(d)) as DriverDocument[]);
    await one.insertMany(docs.map((d) => deepClone(d)) as DriverDocument[]);
    return [many, one];
  }

  const contents = async (coll: Collection<DriverDocument>): Promise<string> =>
    Buffer.from(
      BSON.serialize({ all: await coll.find({}, { sort: { _id: 1 }, promoteValues: false }).toArray() }),
    ).toString('hex');

  it('leaves what one updateOne per document leaves, errors and all', async () => {
    for (const u of PLANNED) {
      const [many, one] = await twin();
      const ids = (await one.find({}, { sort: { _id: 1 } }).toArray()).map((d) => d._id as unknown);
      let manyError: string | undefined;
      let oneError: string | undefined;
      let modified = 0;
      try {
        modified = (await many.updateMany({}, u)).modifiedCount;
      } catch (err) {
        manyError = (err as { codeName?: string }).codeName;
      }
      let oneModified = 0;
      for (const id of ids) {
        try {
          oneModified += (await one.updateOne({ _id: id as never }, u)).modifiedCount;
        } catch (err) {
          // updateMany stops at its first error; so does this.
          oneError = (err as { codeName?: string }).codeName;
          break;
        }
      }
      expect(manyError, JSON.stringify(u)).toBe(oneError);
      if (manyError === undefined) expect(modified, JSON.stringify(u)).toBe(oneModified);
      expect(await contents(many), JSON.stringify(u)).toBe(await contents(one));
    }
  });
});
