/**
 * Index order across BSON types (MongoDB's comparison order): a hinted index scan returns documents
 * in that order, forward and backward, with numbers of every BSON type compared by value and
 * strings holding any code unit; a unique index treats equal numbers of different types as one key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal128, Double, Int32, Long, ObjectId, type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
type Doc = { _id: number } & Document;
let mixed: Collection<Doc>;

// In MongoDB's order: null < numbers (NaN first) < strings < objects < ObjectId < booleans < dates.
const ordered: unknown[] = [
  null,
  Number.NaN,
  Number.NEGATIVE_INFINITY,
  Long.fromNumber(-5),
  -1.5,
  new Int32(0),
  Decimal128.fromString('2.5'),
  3,
  Long.fromString('9007199254740993'),
  Number.POSITIVE_INFINITY,
  '',
  'a',
  'a\u0000b',
  'a\u0001',
  'ab',
  '\uffff',
  { x: 1 },
  new ObjectId('000000000000000000000001'),
  new ObjectId('ffffffffffffffffffffff00'),
  false,
  true,
  new Date(-1),
  new Date(5),
];

beforeAll(async () => {
  t = await openTestDb('indexkeys');
  mixed = t.db.collection<Doc>('mixed');
  await mixed.createIndex({ v: 1 }, { name: 'v_asc' });
  await mixed.createIndex({ v: -1 }, { name: 'v_desc' });
  // Inserted out of order, so the order seen can only come from the index.
  const docs = ordered.map((v, i) => ({ _id: i, v }));
  await mixed.insertMany([...docs.filter((_, i) => i % 2 === 1), ...docs.filter((_, i) => i % 2 === 0)]);
});

afterAll(async () => {
  await t?.close();
});

const ids = (docs: Document[]): number[] => docs.map((d) => d._id as number);
const all = ordered.map((_, i) => i);

describe('index order across types', () => {
  it('scans an ascending index in BSON order, both ways', async () => {
    expect(ids(await mixed.find({}).hint('v_asc').sort({ v: 1 }).toArray())).toEqual(all);
    expect(ids(await mixed.find({}).hint('v_asc').sort({ v: -1 }).toArray())).toEqual([...all].reverse());
  });

  it('scans a descending index in BSON order, both ways', async () => {
    expect(ids(await mixed.find({}).hint('v_desc').sort({ v: -1 }).toArray())).toEqual([...all].reverse());
    expect(ids(await mixed.find({}).hint('v_desc').sort({ v: 1 }).toArray())).toEqual(all);
  });

  it('bounds a range within one type through the index', async () => {
    const nums = await mixed
      .find({ v: { $gte: -1.5, $lt: 3 } })
      .hint('v_asc')
      .toArray();
    expect(ids(nums)).toEqual([4, 5, 6]);
    const strs = await mixed
      .find({ v: { $gt: 'a' } })
      .hint('v_desc')
      .sort({ v: 1 })
      .toArray();
    expect(ids(strs)).toEqual([12, 13, 14, 15]);
    const dates = await mixed
      .find({ v: { $lte: new Date(5) } })
      .hint('v_asc')
      .toArray();
    expect(ids(dates)).toEqual([21, 22]);
  });

  it('finds equal numbers of different types under one key', async () => {
    expect(
      ids(
        await mixed
          .find({ v: new Double(3) })
          .hint('v_asc')
          .toArray(),
      ),
    ).toEqual([7]);
    expect(
      ids(
        await mixed
          .find({ v: Long.fromNumber(0) })
          .hint('v_desc')
          .toArray(),
      ),
    ).toEqual([5]);
  });
});

describe('unique keys across number types and strings', () => {
  it('refuses a number equal in value to one held, whatever its type', async () => {
    const u = t.db.collection<Doc>('uniq');
    await u.createIndex({ k: 1 }, { unique: true });
    await u.insertMany([
      { _id: 1, k: 1 },
      { _id: 2, k: 'a\u0000' },
      { _id: 3, k: -0 },
    ]);
    const equal = [Long.fromNumber(1), Decimal128.fromString('1.0'), new Double(1), 'a\u0000', 0];
    for (const [i, k] of equal.entries()) {
      await expect(u.insertOne({ _id: 10 + i, k })).rejects.toMatchObject({ code: 11000 });
    }
    await u.insertOne({ _id: 4, k: 'a' });
    expect(await u.countDocuments()).toBe(4);
  });
});
