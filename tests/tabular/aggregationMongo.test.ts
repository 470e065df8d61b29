/**
 * data_aggregation in MongoDB: the same records grouped by the database (one $group pipeline against
 * the harness database) and by the file core give the same groups: counts, distinct counts, min and
 * max exactly, sums and means to 1e-9 relative, with nulls, missing fields and text among the numbers.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dataAggregation from '../../src/jobs/tabular/dataAggregation.js';
import { aggregateRecords } from '../../src/jobs/tabular/lib/aggregate.js';
import { aggregateInMongo } from '../../src/jobs/tabular/lib/aggregateMongo.js';
import type { MetricSpec } from '../../src/jobs/tabular/lib/metrics.js';
import { writeRecords } from '../../src/jobs/tabular/records.js';
import { recordingContext } from '../data/helpers.js';
import { openTestDb, type TestDb } from '../helpers/db.js';

const REGIONS = ['north', 'south', 'east', 'west', null];
const ROWS = Array.from({ length: 3000 }, (_, i) => {
  const r: Record<string, unknown> = { region: REGIONS[i % 5], shop: `s${i % 3}` };
  if (i % 13 !== 0) r.qty = (i * 7) % 11;
  r.price = i % 17 === 0 ? null : i % 19 === 0 ? 'n/a' : ((i * 3.7) % 100) + 0.25;
  r.user = i % 23 === 0 ? null : `u${(i * 5) % 97}`;
  return r;
});

const METRICS: MetricSpec[] = [
  { name: 'rows', op: 'count', field: '*' },
  { name: 'priced', op: 'count', field: 'price' },
  { name: 'qty', op: 'sum', field: 'qty' },
  { name: 'revenue', op: 'sum', field: 'price' },
  { name: 'mean_price', op: 'mean', field: 'price' },
  { name: 'min_price', op: 'min', field: 'price' },
  { name: 'max_qty', op: 'max', field: 'qty' },
  { name: 'users', op: 'distinct_count', field: 'user' },
];

let t: TestDb;
let dir: string;
beforeAll(async () => {
  t = await openTestDb('agg_mongo');
  dir = await mkdtemp(join(tmpdir(), 'jobd-aggmongo-'));
  await t.db.collection('orders').insertMany(ROWS.map((r) => ({ ...r })));
  await writeRecords(join(dir, 'orders.ndjson'), ROWS);
});
afterAll(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

const sources = () => ({ shop: { kind: 'mongodb' as const, uri: t.uri, database: t.dbName } });

async function groups(path: string) {
  const text = await readFile(path, 'utf8');
  const out = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return out.sort((a, b) =>
    JSON.stringify([a.region, a.shop]).localeCompare(JSON.stringify([b.region, b.shop])),
  );
}

function close(a: unknown, b: unknown): boolean {
  if (typeof a !== 'number' || typeof b !== 'number') return a === b;
  return a === b || Math.abs(a - b) <= 1e-9 * Math.max(Math.abs(a), Math.abs(b));
}

describe('data_aggregation in MongoDB', () => {
  it('gives the groups the file core gives, from one pipeline', async () => {
    const ctx = recordingContext();
    const inDb = await aggregateInMongo(
      {
        source: 'shop',
        collection: 'orders',
        groupBy: ['region', 'shop'],
        metrics: METRICS,
        output: join(dir, 'db.ndjson'),
        batchSize: 4,
      },
      ctx,
      { sources: sources() },
    );
    const onFile = await aggregateRecords(
      {
        input: join(dir, 'orders.ndjson'),
        output: join(dir, 'file.ndjson'),
        groupBy: ['region', 'shop'],
        metrics: METRICS,
        spillLimit: 1000,
      },
      ctx,
    );
    expect(inDb).toMatchObject({ rows: ROWS.length, groups: 15 });
    expect(onFile).toMatchObject({ rows: ROWS.length, groups: 15 });
    const [a, b] = [await groups(join(dir, 'db.ndjson')), await groups(join(dir, 'file.ndjson'))];
    expect(a).toHaveLength(15);
    a.forEach((g, i) => {
      expect(Object.keys(g).sort()).toEqual(Object.keys(b[i]!).sort());
      for (const k of Object.keys(g))
        expect(close(g[k], b[i]![k]), `${JSON.stringify(g)} vs ${JSON.stringify(b[i])}: ${k}`).toBe(true);
    });
    // Groups whose key is null (the field null) are one group, as on files.
    expect(a.filter((g) => g.region === null)).toHaveLength(3);
  });

  it('applies a filter first; names a source that is not a mongodb source', async () => {
    const r = await aggregateInMongo(
      {
        source: 'shop',
        collection: 'orders',
        filter: { region: 'north' },
        groupBy: [],
        metrics: [{ name: 'rows', op: 'count', field: '*' }],
        output: join(dir, 'north.ndjson'),
        batchSize: 100,
      },
      recordingContext(),
      { sources: sources() },
    );
    expect(r).toMatchObject({ rows: 600, groups: 1 });
    expect(await groups(join(dir, 'north.ndjson'))).toEqual([{ rows: 600 }]);
    await expect(
      aggregateInMongo(
        {
          source: 'other',
          collection: 'orders',
          groupBy: [],
          metrics: [{ name: 'rows', op: 'count', field: '*' }],
          output: join(dir, 'x.ndjson'),
          batchSize: 100,
        },
        recordingContext(),
        { sources: sources() },
      ),
    ).rejects.toThrow(/source: "other" is not a mongodb source .*mongodb sources: shop/);
  });

  it('refuses a job with both a file and a collection, or a collection without its source', async () => {
    const base = { output: '/data/out.ndjson', metrics: { n: { count: '*' } } };
    const both = await dataAggregation.input.safeParseAsync({
      ...base,
      input: '/data/in.ndjson',
      source: 'shop',
      collection: 'o',
    });
    expect(both.success).toBe(false);
    expect(JSON.stringify(both.error?.issues)).toContain('not both');
    const half = await dataAggregation.input.safeParseAsync({ ...base, collection: 'o' });
    expect(half.success).toBe(false);
    const filterOnFile = await dataAggregation.input.safeParseAsync({
      ...base,
      input: '/data/in.ndjson',
      filter: { a: 1 },
    });
    expect(JSON.stringify(filterOnFile.error?.issues)).toContain('goes with source and collection');
    expect(
      (await dataAggregation.input.safeParseAsync({ ...base, source: 'shop', collection: 'o' })).success,
    ).toBe(true);
  });
});
