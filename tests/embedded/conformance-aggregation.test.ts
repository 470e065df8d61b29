/**
 * Aggregation stages and accumulators as MongoDB documents them. Where MongoDB leaves an order
 * unspecified ($group output, $addToSet contents) the assertions sort first.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Collection, Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';

/** Free-form test documents: _id of any BSON type, any update shape (the driver's schema types assume ObjectId ids). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

let t: TestDb;
let sales: Collection<Loose>;

beforeEach(async () => {
  t = await openTestDb('conf_agg');
  sales = t.db.collection('sales');
  await sales.insertMany([
    { _id: 1, item: 'abc', price: 10, qty: 2, tags: ['x', 'y'], day: 1 },
    { _id: 2, item: 'jkl', price: 20, qty: 1, tags: ['y'], day: 1 },
    { _id: 3, item: 'xyz', price: 5, qty: 10, tags: [], day: 2 },
    { _id: 4, item: 'xyz', price: 5, qty: 20, day: 2 },
    { _id: 5, item: 'abc', price: 10, qty: 10, tags: ['x'], day: 3 },
  ] as Document[]);
});

afterEach(async () => {
  await t.close();
});

const agg = (pipeline: Document[]) => sales.aggregate(pipeline).toArray();

describe('aggregation', () => {
  it('$match then $group with $sum, $avg, $min, $max, $push, $addToSet, $first, $last', async () => {
    const rows = await agg([
      { $match: { qty: { $gte: 2 } } },
      { $sort: { _id: 1 } },
      {
        $group: {
          _id: '$item',
          total: { $sum: { $multiply: ['$price', '$qty'] } },
          count: { $sum: 1 },
          avgQty: { $avg: '$qty' },
          minQty: { $min: '$qty' },
          maxQty: { $max: '$qty' },
          ids: { $push: '$_id' },
          days: { $addToSet: '$day' },
          first: { $first: '$_id' },
          last: { $last: '$_id' },
        },
      },
      { $sort: { _id: 1 } },
    ]);
    for (const row of rows) (row.days as number[]).sort((a, b) => a - b);
    expect(rows).toEqual([
      {
        _id: 'abc',
        total: 120,
        count: 2,
        avgQty: 6,
        minQty: 2,
        maxQty: 10,
        ids: [1, 5],
        days: [1, 3],
        first: 1,
        last: 5,
      },
      {
        _id: 'xyz',
        total: 150,
        count: 2,
        avgQty: 15,
        minQty: 10,
        maxQty: 20,
        ids: [3, 4],
        days: [2],
        first: 3,
        last: 4,
      },
    ]);
  });

  it('$group with _id null aggregates the whole input', async () => {
    expect(await agg([{ $group: { _id: null, n: { $sum: 1 }, qty: { $sum: '$qty' } } }])).toEqual([
      { _id: null, n: 5, qty: 43 },
    ]);
  });

  it('$project computes and renames fields; $addFields adds to the whole document', async () => {
    const projected = await agg([
      { $match: { _id: 1 } },
      { $project: { _id: 0, name: '$item', amount: { $multiply: ['$price', '$qty'] } } },
    ]);
    expect(projected).toEqual([{ name: 'abc', amount: 20 }]);
    const added = await agg([
      { $match: { _id: 2 } },
      { $addFields: { amount: { $multiply: ['$price', '$qty'] }, item: { $toUpper: '$item' } } },
    ]);
    expect(added).toEqual([{ _id: 2, item: 'JKL', price: 20, qty: 1, tags: ['y'], day: 1, amount: 20 }]);
  });

  it('$unwind emits one document per element, dropping empty and missing arrays unless asked', async () => {
    const plain = await agg([
      { $unwind: '$tags' },
      { $project: { tags: 1 } },
      { $sort: { _id: 1, tags: 1 } },
    ]);
    expect(plain).toEqual([
      { _id: 1, tags: 'x' },
      { _id: 1, tags: 'y' },
      { _id: 2, tags: 'y' },
      { _id: 5, tags: 'x' },
    ]);
    const kept = await agg([
      { $unwind: { path: '$tags', preserveNullAndEmptyArrays: true, includeArrayIndex: 'i' } },
      { $match: { _id: { $in: [3, 4, 1] } } },
      { $project: { tags: 1, i: 1 } },
      { $sort: { _id: 1, i: 1 } },
    ]);
    expect(kept).toEqual([
      { _id: 1, tags: 'x', i: 0 },
      { _id: 1, tags: 'y', i: 1 },
      { _id: 3, i: null },
      { _id: 4, i: null },
    ]);
  });

  it('$sort, $skip and $limit page through the input', async () => {
    const page = await agg([
      { $sort: { qty: -1, _id: 1 } },
      { $skip: 1 },
      { $limit: 2 },
      { $project: { _id: 1 } },
    ]);
    expect(page).toEqual([{ _id: 3 }, { _id: 5 }]);
  });

  it('$count counts the documents reaching it', async () => {
    expect(await agg([{ $match: { price: 5 } }, { $count: 'cheap' }])).toEqual([{ cheap: 2 }]);
    expect(await agg([{ $match: { price: 999 } }, { $count: 'none' }])).toEqual([]);
  });

  it('$facet runs sub-pipelines over the same input', async () => {
    const [facets] = await agg([
      {
        $facet: {
          byDay: [{ $group: { _id: '$day', n: { $sum: 1 } } }, { $sort: { _id: 1 } }],
          top: [{ $sort: { qty: -1 } }, { $limit: 1 }, { $project: { _id: 1 } }],
          total: [{ $count: 'n' }],
        },
      },
    ]);
    expect(facets).toEqual({
      byDay: [
        { _id: 1, n: 2 },
        { _id: 2, n: 2 },
        { _id: 3, n: 1 },
      ],
      top: [{ _id: 4 }],
      total: [{ n: 5 }],
    });
  });

  it('$lookup joins on localField/foreignField into an array', async () => {
    await t.db.collection('items').insertMany([
      { _id: 'abc', label: 'Alpha' },
      { _id: 'xyz', label: 'Omega' },
    ] as Document[]);
    const rows = await agg([
      { $match: { _id: { $in: [1, 2, 3] } } },
      { $lookup: { from: 'items', localField: 'item', foreignField: '_id', as: 'info' } },
      { $project: { item: 1, info: 1 } },
      { $sort: { _id: 1 } },
    ]);
    expect(rows).toEqual([
      { _id: 1, item: 'abc', info: [{ _id: 'abc', label: 'Alpha' }] },
      { _id: 2, item: 'jkl', info: [] },
      { _id: 3, item: 'xyz', info: [{ _id: 'xyz', label: 'Omega' }] },
    ]);
  });

  it('$bucket groups by boundaries with a default bucket and output accumulators', async () => {
    const rows = await agg([
      {
        $bucket: {
          groupBy: '$qty',
          boundaries: [0, 5, 15],
          default: 'big',
          output: { n: { $sum: 1 }, ids: { $push: '$_id' } },
        },
      },
    ]);
    expect(rows).toEqual([
      { _id: 0, n: 2, ids: [1, 2] },
      { _id: 5, n: 2, ids: [3, 5] },
      { _id: 'big', n: 1, ids: [4] },
    ]);
  });

  it('$replaceRoot promotes an embedded document', async () => {
    const rows = await agg([
      { $match: { _id: 1 } },
      { $replaceRoot: { newRoot: { name: '$item', meta: { price: '$price' } } } },
    ]);
    expect(rows).toEqual([{ name: 'abc', meta: { price: 10 } }]);
  });
});
