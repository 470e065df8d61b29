/**
 * data_transform → record_validation → data_aggregation through an in-process daemon (each job in its
 * sandbox child, paths confined to the data dirs), a bad row failing a job for good, and the library
 * refusing a bad expression or schema before anything is written.
 */
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { ValidationError } from '../../src/errors.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { startTestDaemon, testConfig } from '../integration/daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

let f: StoreFixture;
let daemon: Daemon;
let client: JobdClient;
let base: string;
let data: string;

beforeAll(async () => {
  f = await openStoreFixture('tabular_processing');
  base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-tabular-proc-')));
  data = join(base, 'data');
  mkdirSync(data);
  const dataDirs = { data };
  daemon = await startTestDaemon(f, { dataDirs });
  client = await JobdClient.connect({
    ...testConfig(f, { dataDirs }),
    mongoUri: f.t.uri,
    database: f.t.dbName,
  });
});
afterAll(async () => {
  await client?.close();
  await daemon?.stop();
  await f?.close();
  rmSync(base, { recursive: true, force: true });
});

const lines = (p: string) =>
  readFileSync(p, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('tabular processing jobs through a daemon', () => {
  it('chains transform, validation and aggregation on files, and fails a bad row for good', async () => {
    const raw = join(data, 'orders.ndjson');
    writeFileSync(
      raw,
      [
        { shop: 'a', price: '2.5', qty: '4' },
        { shop: 'a', price: '1', qty: '2' },
        { shop: 'b', price: 'free', qty: '1' },
        { shop: 'b', price: '10', qty: '-3' },
        { shop: 'c', price: '3', qty: '1' },
      ]
        .map((r) => JSON.stringify(r))
        .join('\n') + '\n',
    );
    const badInput = join(data, 'bad.ndjson');
    writeFileSync(badInput, '{"qty":"1"}\n{"qty":"x"}\n');
    const [t, failing] = await Promise.all([
      client.enqueue('data_transform', {
        input: raw,
        output: join(data, 'typed.ndjson'),
        quarantine: join(data, 'quarantine.ndjson'),
        convert: { price: { to: 'float', on_error: 'quarantine' }, qty: 'int' },
        compute: { total: { $multiply: ['$price', '$qty'] } },
      }),
      client.enqueue('data_transform', {
        input: badInput,
        output: join(data, 'never.ndjson'),
        convert: { qty: 'int' },
      }),
    ]);
    const done = await client.waitFor(t.job._id, { timeoutMs: 120_000 });
    expect(done.state).toBe('completed');
    expect(done.result).toMatchObject({ rows_read: 5, rows_written: 4, rows_quarantined: 1 });
    expect(lines(join(data, 'quarantine.ndjson'))).toEqual([
      expect.objectContaining({ line: 3, errors: [{ field: 'price', message: 'not a number (to float)' }] }),
    ]);

    const bad = await client.waitFor(failing.job._id, { timeoutMs: 120_000 });
    expect(bad.state).toBe('failed');
    expect(bad.attempts).toBe(1);
    expect(bad.lastError?.message).toContain(
      'bad.ndjson, line 2: field "qty" = "x": not an integer (to int)',
    );

    const v = await client.enqueue('record_validation', {
      input: join(data, 'typed.ndjson'),
      output: join(data, 'valid.ndjson'),
      invalid_output: join(data, 'invalid.ndjson'),
      schema: {
        type: 'object',
        required: ['shop', 'qty'],
        properties: { qty: { type: 'integer', minimum: 1 } },
      },
    });
    const vd = await client.waitFor(v.job._id, { timeoutMs: 120_000 });
    expect(vd.state).toBe('completed');
    expect(vd.result).toMatchObject({
      rows: 4,
      valid: 3,
      invalid: 1,
      rules: [{ keyword: 'minimum', path: '/qty', rows: 1 }],
    });

    const a = await client.enqueue('data_aggregation', {
      input: join(data, 'valid.ndjson'),
      output: join(data, 'by-shop.ndjson'),
      group_by: ['shop'],
      metrics: { orders: { count: '*' }, revenue: { sum: 'total' }, top: { max: 'price' } },
      spill_limit: 1,
    });
    const ad = await client.waitFor(a.job._id, { timeoutMs: 120_000 });
    expect(ad.state).toBe('completed');
    expect(ad.result).toMatchObject({ rows: 3, groups: 2, spilled_runs: 3 });
    expect(lines(join(data, 'by-shop.ndjson'))).toEqual([
      { shop: 'a', orders: 2, revenue: 12, top: 2.5 },
      { shop: 'c', orders: 1, revenue: 3, top: 3 },
    ]);
  }, 240_000);

  it('refuses a bad expression, metric or schema at enqueue, naming the field, and writes nothing', async () => {
    const before = await f.store.jobs.countDocuments({});
    const io = { input: join(data, 'x.ndjson'), output: join(data, 'y.ndjson') };
    const errs = await Promise.all([
      client
        .enqueue('data_transform', { ...io, compute: { total: { $times: ['$a', 2] } } })
        .catch((e: unknown) => e),
      client.enqueue('data_aggregation', { ...io, metrics: { m: { median: 'a' } } }).catch((e: unknown) => e),
      client
        .enqueue('record_validation', {
          ...io,
          invalid_output: join(data, 'z.ndjson'),
          schema: { type: 'objekt' },
        })
        .catch((e: unknown) => e),
    ]);
    for (const e of errs) expect(e).toBeInstanceOf(ValidationError);
    const [t, m, s] = errs.map((e) => (e as Error).message);
    expect(t).toContain(
      'params.compute.total = {"$times":["$a",2]} is not allowed: not a valid MongoDB aggregation expression: unknown operator $times',
    );
    expect(m).toContain('params.metrics.m');
    expect(s).toContain('params.schema = {"type":"objekt"} is not allowed: not a valid JSON Schema');
    expect(await f.store.jobs.countDocuments({})).toBe(before);
  });
});
