/**
 * $project then $group over field paths, $cond, $type and $subtract, with $sum, $avg, $min, $max,
 * $count and $percentile, as MongoDB documents them: $sum and $avg skip non-numeric values, $min and
 * $max skip null and missing, a missing group key groups as null, date minus date is milliseconds.
 * The same pipeline must answer the same whatever the documents hold (longs, arrays, doubles).
 */
import { Double, Long, type Document } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
const D0 = new Date('2030-01-01T00:00:00Z').getTime();
const at = (ms: number) => new Date(D0 + ms);

const PIPELINE: Document[] = [
  {
    $project: {
      type: 1,
      state: 1,
      attempts: 1,
      runMs: {
        $cond: [
          { $eq: [{ $type: '$startedAt' }, 'date'] },
          { $subtract: ['$finishedAt', '$startedAt'] },
          null,
        ],
      },
    },
  },
  {
    $group: {
      _id: '$type',
      n: { $count: {} },
      done: { $sum: { $cond: [{ $eq: ['$state', 'completed'] }, 1, 0] } },
      attempts: { $sum: '$attempts' },
      avgAttempts: { $avg: '$attempts' },
      runMin: { $min: '$runMs' },
      runMax: { $max: '$runMs' },
      run: { $percentile: { input: '$runMs', p: [0.5, 1], method: 'approximate' } },
    },
  },
  { $sort: { _id: 1 } },
];

beforeAll(async () => {
  t = await openTestDb('group');
  await t.db.collection('runs').insertMany([
    { type: 'a', state: 'completed', attempts: 1, startedAt: at(1000), finishedAt: at(3000) },
    { type: 'a', state: 'failed', attempts: 2, startedAt: at(2000), finishedAt: at(7000) },
    { type: 'a', state: 'completed', attempts: 3, startedAt: at(0), finishedAt: at(4000) },
    { type: 'a', state: 'cancelled', attempts: 0, startedAt: null, finishedAt: at(100) },
    { type: 'b', state: 'completed', attempts: 1, finishedAt: at(500) },
    { state: 'completed', attempts: 'two', startedAt: at(0), finishedAt: at(10) },
  ]);
});
afterAll(() => t.close());

describe('$project then $group', () => {
  it('counts, sums, averages and takes percentiles as documented', async () => {
    const rows = await t.db.collection('runs').aggregate(PIPELINE).toArray();
    expect(rows).toEqual([
      { _id: null, n: 1, done: 1, attempts: 0, avgAttempts: null, runMin: 10, runMax: 10, run: [10, 10] },
      {
        _id: 'a',
        n: 4,
        done: 2,
        attempts: 6,
        avgAttempts: 1.5,
        runMin: 2000,
        runMax: 5000,
        run: [4000, 5000],
      },
      { _id: 'b', n: 1, done: 1, attempts: 1, avgAttempts: 1, runMin: null, runMax: null, run: [null, null] },
    ]);
  });

  it('answers the same for values outside plain numbers and dates, whichever engine runs it', async () => {
    const c = t.db.collection('mixed');
    await c.insertMany([
      { type: 'a', state: 'completed', attempts: new Long(5), startedAt: at(0), finishedAt: at(50) },
      { type: 'a', state: 'completed', attempts: new Double(2), startedAt: at(0), finishedAt: at(70) },
      { type: ['x', 'y'], state: 'failed', attempts: 1, startedAt: at(0), finishedAt: at(30) },
      { type: 'b', state: ['completed'], attempts: 4, startedAt: 'yesterday', finishedAt: at(1) },
      { type: 'b', attempts: 1.5, finishedAt: at(9) },
    ]);
    // A leading $match on $expr keeps the stages after it in the general engine.
    const general = [{ $match: { $expr: { $eq: [1, 1] } } }, ...PIPELINE];
    const direct = await c.aggregate(PIPELINE).toArray();
    expect(direct).toEqual(await c.aggregate(general).toArray());
    expect(direct.find((r) => r._id === 'a')).toMatchObject({ n: 2, attempts: 7, runMax: 70 });
    const onMissing = [{ $group: { _id: null, eq: { $sum: { $cond: [{ $eq: ['$nope', null] }, 1, 0] } } } }];
    expect(await c.aggregate(onMissing).toArray()).toEqual(
      await c.aggregate([{ $match: { $expr: { $eq: [1, 1] } } }, ...onMissing]).toArray(),
    );
  });

  it('groups on $trim of a string as documented, whichever engine runs it', async () => {
    const c = t.db.collection('trimmed');
    // Every default character on one side or the other; U+200B, U+3000 and U+2028 are not among them.
    const ws = '\u0000 \t\n\v\f\r\u00a0\u1680\u2000\u2005\u200a';
    await c.insertMany([
      { u: 'abc' },
      { u: `${ws}abc` },
      { u: `abc${ws}` },
      { u: '\u200babc' },
      { u: 'abc\u3000' },
      { u: '\u2028abc' },
      { u: ws },
      { u: null },
      {},
    ]);
    const pipeline = [
      { $group: { _id: { $trim: { input: '$u' } }, n: { $sum: 1 } } },
      { $sort: { _id: 1, n: 1 } },
    ];
    const direct = await c.aggregate(pipeline).toArray();
    expect(direct).toEqual(
      await c.aggregate([{ $match: { $expr: { $eq: [1, 1] } } }, ...pipeline]).toArray(),
    );
    expect(direct).toEqual([
      { _id: null, n: 2 },
      { _id: '', n: 1 },
      { _id: 'abc', n: 3 },
      { _id: 'abc\u3000', n: 1 },
      { _id: '\u200babc', n: 1 },
      { _id: '\u2028abc', n: 1 },
    ]);
  });
});
