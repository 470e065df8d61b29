/**
 * A walk of index bounds that select exactly a filter's matches is not re-checked document by
 * document; everywhere else it must be. These cases sit on the edge: each answer is what MongoDB's
 * documentation gives (type bracketing, arrays, null and missing, fields outside the index), and each
 * is compared with the same filter run without the index (hint $natural, every document checked).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Collection, Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let plain: Collection<Document>;
let multi: Collection<Document>;
const day = (d: number): Date => new Date(Date.UTC(2030, 0, d));

beforeAll(async () => {
  t = await openTestDb('planner_exact');
  plain = t.db.collection('plain');
  multi = t.db.collection('multi');
  await plain.createIndex({ state: 1, at: 1, _id: 1 });
  await multi.createIndex({ state: 1, at: 1 });
  const docs: Document[] = [];
  const states = ['done', 'failed', 'queued'];
  for (let i = 0; i < 60; i++) {
    // Dates mostly; some numbers, strings, nulls and missing values in the range field.
    const at =
      i % 10 === 3
        ? i
        : i % 10 === 5
          ? `s${i}`
          : i % 10 === 7
            ? null
            : i % 10 === 9
              ? undefined
              : day((i % 28) + 1);
    docs.push({ _id: i, state: states[i % 3], ...(at === undefined ? {} : { at }), n: i % 4 });
  }
  docs.push({ _id: 100 }, { _id: 101, state: null, at: day(5) });
  await plain.insertMany(docs);
  // The same documents, some holding arrays: that index is multikey.
  await multi.insertMany([
    ...docs,
    { _id: 200, state: ['done', 'queued'], at: day(16) },
    { _id: 201, state: 'done', at: [day(1), day(20)] },
  ]);
});

afterAll(async () => {
  await t.close();
});

async function both(coll: Collection<Document>, filter: Document): Promise<[unknown[], unknown[]]> {
  const viaIndex = await coll.find(filter).sort({ _id: 1 }).toArray();
  const scanned = await coll
    .find(filter, { hint: { $natural: 1 } })
    .sort({ _id: 1 })
    .toArray();
  return [viaIndex.map((d) => d._id), scanned.map((d) => d._id)];
}

describe('index bounds that imply the filter', () => {
  const cases: [string, Document][] = [
    ['equality and a date range', { state: 'done', at: { $gte: day(5), $lt: day(20) } }],
    ['$in and an open date range', { state: { $in: ['done', 'failed'] }, at: { $gte: day(10) } }],
    ['$eq and $gt', { state: { $eq: 'failed' }, at: { $gt: day(10) } }],
    ['$lte only', { state: 'queued', at: { $lte: day(12) } }],
    ['equality alone', { state: 'done' }],
    ['a field outside the index', { state: 'done', at: { $gte: day(1) }, n: 2 }],
    ['a number range over mixed types', { state: 'done', at: { $gte: 0 } }],
    ['equality to null (matches missing)', { state: null }],
    ['$in with null', { state: { $in: ['done', null] }, at: { $lt: day(30) } }],
    ['$ne beside the range', { state: 'done', at: { $ne: null, $gte: day(1) } }],
    ['$or', { $or: [{ state: 'done' }, { state: 'failed' }], at: { $gte: day(1) } }],
  ];
  for (const [name, filter] of cases) {
    it(`gives the scan's answer: ${name}`, async () => {
      const [viaIndex, scanned] = await both(plain, filter);
      expect(viaIndex).toEqual(scanned);
      const [viaMulti, scannedMulti] = await both(multi, filter);
      expect(viaMulti).toEqual(scannedMulti);
    });
  }

  it('answers as MongoDB documents: a date range matches only dates, arrays by any element', async () => {
    const [viaIndex] = await both(plain, { state: 'done', at: { $gte: day(1) } });
    // _id % 3 === 0 are 'done'; of those, only dates (i % 10 not 3, 5, 7 or 9) fall in the range.
    const want = Array.from({ length: 60 }, (_, i) => i).filter(
      (i) => i % 3 === 0 && ![3, 5, 7, 9].includes(i % 10),
    );
    expect(viaIndex).toEqual(want);
    const [viaMulti] = await both(multi, { state: 'done', at: { $gte: day(15) } });
    expect(viaMulti).toContain(200);
    expect(viaMulti).toContain(201);
  });

  it('counts the same way in an aggregation', async () => {
    const match = { state: { $in: ['done', 'failed'] }, at: { $gte: day(10) } };
    const [row] = await plain.aggregate([{ $match: match }, { $count: 'n' }]).toArray();
    const [viaIndex] = await both(plain, match);
    expect(row?.n).toBe(viaIndex.length);
    expect(viaIndex.length).toBeGreaterThan(0);
  });
});
