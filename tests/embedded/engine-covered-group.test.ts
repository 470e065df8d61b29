/**
 * A $match then [$project] $group answered from the index keys alone (a covered read) gives what
 * reading every document gives: each pipeline is compared with the same one run with hint $natural.
 * The data holds what an index key cannot stand for: missing and null values (both indexed as null),
 * -0 (indexed as 0), longs, embedded documents, and arrays (a multikey index is never covered); and a
 * number where the other documents hold a date (a date less a number is a date).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Long, type Collection, type Document } from 'mongodb';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { Index } from '../../src/embedded/indexes.js';

let t: TestDb;
let jobs: Collection<Document>;
let multi: Collection<Document>;
const KEY = { state: 1, finishedAt: 1, _id: 1, type: 1, startedAt: 1, createdAt: 1, attempts: 1 };
const at = (s: number): Date => new Date(Date.UTC(2030, 0, 1) + s * 1000);

beforeAll(async () => {
  t = await openTestDb('covered_group');
  jobs = t.db.collection('jobs');
  multi = t.db.collection('multi');
  await jobs.createIndex(KEY);
  await multi.createIndex(KEY);
  const docs: Document[] = [];
  const states = ['completed', 'failed', 'cancelled', 'queued'];
  for (let i = 0; i < 120; i++) {
    const odd = i % 12;
    docs.push({
      _id: `j${String(i).padStart(3, '0')}`,
      state: states[i % 4],
      finishedAt: at(i * 60),
      ...(odd === 1 ? {} : { type: odd === 2 ? null : `t${i % 3}` }),
      ...(odd === 3
        ? {}
        : {
            startedAt: odd === 4 ? null : odd === 5 ? 'later' : odd === 10 ? 5000 : at(i * 60 - (i % 7) * 5),
          }),
      createdAt: at(i * 60 - 100 - i),
      attempts:
        odd === 6 ? -0 : odd === 7 ? 0 : odd === 8 ? Long.fromNumber(2) : odd === 9 ? 2.5 : 1 + (i % 3),
    });
  }
  await jobs.insertMany(docs);
  await multi.insertMany([...docs, { _id: 'x', state: 'completed', finishedAt: at(5), type: ['a', 'b'] }]);
});

afterAll(async () => {
  await t.close();
});

const perfShape = (since: Date): Document[] => [
  { $match: { state: { $in: ['completed', 'failed', 'cancelled'] }, finishedAt: { $gte: since } } },
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
      startedType: { $type: '$startedAt' },
    },
  },
  {
    $group: {
      _id: '$type',
      count: { $sum: 1 },
      completed: { $sum: { $cond: [{ $eq: ['$state', 'completed'] }, 1, 0] } },
      run: { $percentile: { input: '$runMs', p: [0.5, 0.95], method: 'approximate' } },
      runMax: { $max: '$runMs' },
      attempts: { $avg: '$attempts' },
      minAttempts: { $min: '$attempts' },
      startedMin: { $min: '$startedType' },
      startedMax: { $max: '$startedType' },
    },
  },
  { $sort: { _id: 1 } },
];

async function both(coll: Collection<Document>, pipeline: Document[]): Promise<[Document[], Document[]]> {
  const viaIndex = await coll.aggregate(pipeline).toArray();
  const scanned = await coll.aggregate(pipeline, { hint: { $natural: 1 } }).toArray();
  return [viaIndex, scanned];
}

describe('covered $group', () => {
  it('answers the perf shape as a full scan does, null, missing, -0 and longs included', async () => {
    const [viaIndex, scanned] = await both(jobs, perfShape(at(0)));
    expect(viaIndex.length).toBeGreaterThan(3);
    expect(viaIndex).toEqual(scanned);
  });

  it('answers a $group without $project, and a narrower range, as a full scan does', async () => {
    const pipeline = [
      { $match: { state: 'failed', finishedAt: { $gte: at(1200), $lt: at(5400) } } },
      { $group: { _id: '$attempts', n: { $sum: 1 }, first: { $min: '$createdAt' }, last: { $max: '$_id' } } },
      { $sort: { _id: 1 } },
    ];
    const [viaIndex, scanned] = await both(jobs, pipeline);
    expect(viaIndex.length).toBeGreaterThan(1);
    expect(viaIndex).toEqual(scanned);
  });

  it('reads the documents for fields outside the key, and on a multikey index', async () => {
    const outside = [
      { $match: { state: 'completed', finishedAt: { $gte: at(0) } } },
      { $group: { _id: '$type', n: { $sum: 1 }, latest: { $max: '$updatedAt' } } },
      { $sort: { _id: 1 } },
    ];
    const [a, b] = await both(jobs, outside);
    expect(a).toEqual(b);
    const [m, s] = await both(multi, perfShape(at(0)));
    expect(m.some((g) => Array.isArray(g._id))).toBe(true);
    expect(m).toEqual(s);
  });
});

describe('Index.coveredReader', () => {
  const index = new Index({ v: 2, key: KEY, name: 'k' });
  const doc = {
    _id: 'j1',
    state: 'completed',
    finishedAt: at(10),
    type: 'sync',
    startedAt: at(5),
    createdAt: at(1),
    attempts: 2,
  };
  const keyOf = (d: Document): unknown => {
    index.clear();
    index.add(d);
    let key: unknown;
    // The one entry, in the tree's own form.
    (index as unknown as { tree: { forEachPair(fn: (k: unknown) => void): void } }).tree.forEachPair(
      (k) => (key = k),
    );
    return key;
  };

  it('reads key fields and the _id from the key, a date as its milliseconds (marked in the mask)', () => {
    const read = index.coveredReader(['type', 'attempts', 'startedAt', '_id'])!;
    const out: unknown[] = [];
    expect(read(keyOf(doc), out)).toBe(0b0100);
    expect(out).toEqual(['sync', 2, at(5).getTime(), 'j1']);
    expect(read(keyOf({ ...doc, startedAt: 7 }), out)).toBe(0);
    expect(out[2]).toBe(7);
  });

  it('declines null (maybe missing), 0 (maybe -0), invalid dates, and values the key does not encode', () => {
    const read = index.coveredReader(['type', 'attempts'])!;
    expect(read(keyOf({ ...doc, type: null }), [])).toBe(-1);
    expect(read(keyOf({ ...doc, type: undefined }), [])).toBe(-1);
    expect(read(keyOf({ ...doc, attempts: 0 }), [])).toBe(-1);
    expect(read(keyOf({ ...doc, attempts: Long.fromNumber(2) }), [])).toBe(-1);
    // A null outside the fields read does not matter.
    expect(read(keyOf({ ...doc, startedAt: null }), [])).toBe(0);
    const readStarted = index.coveredReader(['startedAt'])!;
    expect(readStarted(keyOf({ ...doc, startedAt: new Date(Number.NaN) }), [])).toBe(-1);
  });

  it('is not offered for a field outside the key', () => {
    expect(index.coveredReader(['updatedAt'])).toBeUndefined();
  });
});
