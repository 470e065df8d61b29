/**
 * database_ingestion's core against the harness database: a find (Extended JSON filter, projection,
 * sort, limit) and an aggregation, in batches, written as relaxed Extended JSON; a refused query fails
 * without retries, its message free of the URI's credentials.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Decimal128, ObjectId } from 'mongodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dbIngest, type DbIngestInput } from '../../src/jobs/tabular/lib/dbIngest.js';
import { failure, recordingContext } from '../data/helpers.js';
import { openTestDb, type TestDb } from '../helpers/db.js';

let t: TestDb;
let dir: string;
const ids = Array.from({ length: 25 }, () => new ObjectId());
beforeAll(async () => {
  t = await openTestDb('db_ingest');
  dir = await mkdtemp(join(tmpdir(), 'jobd-dbingest-'));
  await t.db.collection('orders').insertMany(
    ids.map((_id, i) => ({
      _id,
      n: i + 1,
      shop: i % 3 === 0 ? 'north' : 'south',
      at: new Date(Date.UTC(2024, 0, 1 + i)),
      price: Decimal128.fromString(`${i}.50`),
      tags: ['a', { deep: i }],
    })),
  );
});
afterAll(async () => {
  await t?.close();
  await rm(dir, { recursive: true, force: true });
});

const sources = () => ({ shop: { kind: 'mongodb' as const, uri: t.uri, database: t.dbName } });

function job(name: string, over: Partial<DbIngestInput>): DbIngestInput {
  return {
    source: 'shop',
    collection: 'orders',
    batch_size: 4,
    output: join(dir, `${name}.ndjson`),
    ...over,
  };
}

async function lines(path: string): Promise<Record<string, unknown>[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('database_ingestion', () => {
  it('a find, in batches, as relaxed Extended JSON (dates, ObjectIds, decimals)', async () => {
    const r = await dbIngest(
      job('find', {
        filter: { at: { $gte: { $date: '2024-01-06T00:00:00Z' } }, shop: 'south' },
        projection: { tags: 0 },
        sort: { n: -1 },
      }),
      recordingContext(),
      { sources: sources() },
    );
    const rows = await lines(r.output);
    const expected = Array.from({ length: 25 }, (_, i) => i + 1)
      .filter((n) => n >= 6 && (n - 1) % 3 !== 0)
      .reverse();
    expect(rows.map((d) => d.n)).toEqual(expected);
    expect(r).toMatchObject({ records: expected.length, database: t.dbName, collection: 'orders' });
    expect(r.batches).toBeGreaterThanOrEqual(Math.ceil(expected.length / 4));
    expect(rows[0]).toEqual({
      _id: { $oid: ids[23]!.toHexString() },
      n: 24,
      shop: 'south',
      at: { $date: '2024-01-24T00:00:00Z' },
      price: { $numberDecimal: '23.50' },
    });
    expect(r.bytes_written).toBe((await readFile(r.output)).length);
  });

  it('an aggregation pipeline, and a find by an Extended JSON ObjectId with a limit', async () => {
    const agg = await dbIngest(
      job('agg', {
        pipeline: [
          { $group: { _id: '$shop', count: { $sum: 1 }, top: { $max: '$n' } } },
          { $sort: { _id: 1 } },
        ],
      }),
      recordingContext(),
      { sources: sources() },
    );
    expect(await lines(agg.output)).toEqual([
      { _id: 'north', count: 9, top: 25 },
      { _id: 'south', count: 16, top: 24 },
    ]);
    const one = await dbIngest(
      job('one', { filter: { _id: { $in: [{ $oid: ids[3]!.toHexString() }] } }, limit: 1 }),
      recordingContext(),
      { sources: sources() },
    );
    expect((await lines(one.output)).map((d) => d.n)).toEqual([4]);
  });

  it('a query the server refuses fails at once; an unknown source is named; nothing is left behind', async () => {
    const e = await failure(
      dbIngest(job('bad', { filter: { n: { $frobnicate: 1 } } }), recordingContext(), { sources: sources() }),
    );
    expect(e.name).toBe('DatabaseReadError');
    expect(e.code).toBe('JOBD_DO_NOT_RETRY');
    expect(e.message).toMatch(/\$frobnicate/);
    const none = await failure(
      dbIngest(job('x', { source: 'nope' }), recordingContext(), { sources: sources() }),
    );
    expect(none.message).toContain('"nope" is not a mongodb source');
    expect((await readdir(dir)).filter((n) => n.startsWith('.bad') || n.startsWith('bad'))).toEqual([]);
  });
});
