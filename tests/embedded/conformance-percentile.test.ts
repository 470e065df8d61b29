/**
 * $percentile and $median as MongoDB 7.0 documents them: numbers compared as numbers, non-numeric
 * inputs ignored, null without numeric input, one result per p, 'approximate' the only method.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
beforeAll(async () => {
  t = await openTestDb('percentile');
  const docs = Array.from({ length: 20 }, (_, i) => ({ g: 'a', v: (i + 1) * 100 }));
  await t.db.collection('c').insertMany([...docs, { g: 'a', v: 'text' }, { g: 'a' }, { g: 'b', v: null }]);
});
afterAll(() => t.close());

describe('$percentile and $median', () => {
  it('orders numbers as numbers and ignores non-numeric inputs (accumulator)', async () => {
    const [a] = await t.db
      .collection('c')
      .aggregate([
        { $match: { g: 'a' } },
        {
          $group: {
            _id: '$g',
            p: { $percentile: { input: '$v', p: [0, 0.5, 0.95, 1], method: 'approximate' } },
            m: { $median: { input: '$v', method: 'approximate' } },
          },
        },
      ])
      .toArray();
    expect(a!.p).toEqual([100, 1000, 1900, 2000]);
    expect(a!.m).toBe(1000);
  });

  it('gives null without numeric input', async () => {
    const [b] = await t.db
      .collection('c')
      .aggregate([
        { $match: { g: 'b' } },
        {
          $group: {
            _id: '$g',
            p: { $percentile: { input: '$v', p: [0.5], method: 'approximate' } },
            m: { $median: { input: '$v', method: 'approximate' } },
          },
        },
      ])
      .toArray();
    expect(b!.p).toEqual([null]);
    expect(b!.m).toBeNull();
  });

  it('works as an expression over an array', async () => {
    const [r] = await t.db
      .collection('c')
      .aggregate([
        { $limit: 1 },
        {
          $project: {
            _id: 0,
            p: { $percentile: { input: [3, 1, 20, 10, 2], p: [0.5, 0.9], method: 'approximate' } },
            m: { $median: { input: [3, 1, 20, 10, 2], method: 'approximate' } },
          },
        },
      ])
      .toArray();
    expect(r).toEqual({ p: [3, 20], m: 3 });
  });

  it('refuses another method and p outside [0, 1]', async () => {
    const agg = (spec: object) =>
      t.db
        .collection('c')
        .aggregate([{ $group: { _id: null, p: { $percentile: spec } } }])
        .toArray();
    await expect(agg({ input: '$v', p: [0.5], method: 'exact' })).rejects.toMatchObject({
      codeName: 'BadValue',
    });
    await expect(agg({ input: '$v', p: [1.5], method: 'approximate' })).rejects.toMatchObject({
      codeName: 'BadValue',
    });
  });
});
