/**
 * BSON comparison order as MongoDB documents it: MinKey < null < numbers < symbol/string < object <
 * array < binData < ObjectId < bool < date < timestamp < regex < MaxKey; numbers compare by value
 * across int32, int64, double and decimal128.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  Binary,
  Decimal128,
  Double,
  Int32,
  Long,
  MaxKey,
  MinKey,
  ObjectId,
  Timestamp,
  type Collection,
  type Document,
} from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let coll: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('conf_order');
  coll = t.db.collection('o');
});

afterEach(async () => {
  await t.close();
});

describe('BSON sort order', () => {
  const values: [string, unknown][] = [
    ['maxKey', new MaxKey()],
    ['regex', /abc/],
    ['timestamp', new Timestamp({ t: 1, i: 1 })],
    ['date', new Date('2020-01-01T00:00:00Z')],
    ['bool', true],
    ['objectId', new ObjectId('507f1f77bcf86cd799439011')],
    ['binData', new Binary(Buffer.from([1, 2, 3]))],
    ['object', { a: 1 }],
    ['string', 'abc'],
    ['number', 42],
    ['null', null],
    ['minKey', new MinKey()],
  ];
  const ascending = values.map(([name]) => name).reverse();

  beforeEach(async () => {
    await coll.insertMany(values.map(([name, v]) => ({ _id: name, v })) as Document[]);
  });

  it('sorts values of different types by type order, ascending and descending', async () => {
    const up = await coll.find({}, { sort: { v: 1 } }).toArray();
    expect(up.map((d) => d._id)).toEqual(ascending);
    const down = await coll.find({}, { sort: { v: -1 } }).toArray();
    expect(down.map((d) => d._id)).toEqual([...ascending].reverse());
  });

  it('sorts a missing field as null', async () => {
    await coll.insertOne({ _id: 'missing' } as Document);
    const up = await coll
      .find({ _id: { $in: ['missing', 'null', 'minKey', 'number'] } } as Document, { sort: { v: 1, _id: 1 } })
      .toArray();
    expect(up.map((d) => d._id)).toEqual(['minKey', 'missing', 'null', 'number']);
  });

  it('orders within a type: false < true, dates by time, strings by code point, objects field by field', async () => {
    await coll.deleteMany({});
    await coll.insertMany([
      { _id: 1, v: true },
      { _id: 2, v: false },
      { _id: 3, v: new Date(2000, 0, 1) },
      { _id: 4, v: new Date(1990, 0, 1) },
      { _id: 5, v: 'b' },
      { _id: 6, v: 'B' },
      { _id: 7, v: 'ab' },
      { _id: 8, v: { a: 2 } },
      { _id: 9, v: { a: 1, b: 5 } },
      { _id: 10, v: { a: 1 } },
    ] as Document[]);
    const up = await coll.find({}, { sort: { v: 1 } }).toArray();
    expect(up.map((d) => d._id)).toEqual([6, 7, 5, 10, 9, 8, 2, 1, 4, 3]);
  });

  it('sorts an array field by its smallest element ascending and its largest descending', async () => {
    await coll.deleteMany({});
    await coll.insertMany([
      { _id: 'a', v: [5, 1] },
      { _id: 'b', v: 3 },
      { _id: 'c', v: [2, 9] },
    ] as Document[]);
    expect((await coll.find({}, { sort: { v: 1 } }).toArray()).map((d) => d._id)).toEqual(['a', 'c', 'b']);
    expect((await coll.find({}, { sort: { v: -1 } }).toArray()).map((d) => d._id)).toEqual(['c', 'a', 'b']);
  });
});

describe('numeric comparison across types', () => {
  beforeEach(async () => {
    await coll.insertMany([
      { _id: 'i1', v: new Int32(1) },
      { _id: 'l2', v: Long.fromNumber(2) },
      { _id: 'd2', v: new Double(2) },
      { _id: 'd25', v: new Double(2.5) },
      { _id: 'm3', v: Decimal128.fromString('3') },
      { _id: 'm15', v: Decimal128.fromString('1.5') },
      { _id: 'l-1', v: Long.fromNumber(-1) },
    ] as Document[]);
  });

  it('sorts numbers by value whatever their type', async () => {
    const up = await coll.find({}, { sort: { v: 1, _id: 1 } }).toArray();
    expect(up.map((d) => d._id)).toEqual(['l-1', 'i1', 'm15', 'd2', 'l2', 'd25', 'm3']);
  });

  it('matches equality and ranges by value across int32, int64, double and decimal128', async () => {
    const ids = async (filter: Document) =>
      (await coll.find(filter, { sort: { _id: 1 } }).toArray()).map((d) => d._id);
    expect(await ids({ v: 2 })).toEqual(['d2', 'l2']);
    expect(await ids({ v: Decimal128.fromString('2.0') })).toEqual(['d2', 'l2']);
    expect(await ids({ v: Long.fromNumber(3) })).toEqual(['m3']);
    expect(await ids({ v: { $gt: 1, $lt: 2.6 } })).toEqual(['d2', 'd25', 'l2', 'm15']);
    expect(await ids({ v: { $gte: Decimal128.fromString('2.5') } })).toEqual(['d25', 'm3']);
    expect(await ids({ v: { $in: [new Int32(-1), 1.5] } })).toEqual(['l-1', 'm15']);
  });

  it('$type distinguishes the numeric types that compare equal', async () => {
    const ids = async (type: string) =>
      (await coll.find({ v: { $type: type } }, { sort: { _id: 1 } }).toArray()).map((d) => d._id);
    expect(await ids('int')).toEqual(['i1']);
    expect(await ids('long')).toEqual(['l-1', 'l2']);
    expect(await ids('double')).toEqual(['d2', 'd25']);
    expect(await ids('decimal')).toEqual(['m15', 'm3']);
    expect((await ids('number')).length).toBe(7);
  });
});
