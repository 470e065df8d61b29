/**
 * The example workflow of docs/tabular.md, as shipped (docs/examples/tabular-pipeline.json, its data dir
 * moved to the test's), submitted with `jobctl workflow submit` to a real daemon: api_ingestion from a
 * paged HTTP API on loopback → data_transform → record_validation → data_aggregation →
 * statistical_analysis → report_generation. The totals are checked against ones computed here from
 * the served records.
 */
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM } from '../helpers/browser.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  JOBCTL_BIN,
  killAllDaemons,
  runCli,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonSettings,
} from '../helpers/daemonProcess.js';
import { submitWorkflowAndSettle } from './analysisHelpers.js';

const TOKEN = 'pipeline-secret-token-0123456789';
const REGIONS = ['north', 'south', 'east', 'west'];

/** 250 orders; a few with an amount that does not convert, an unknown region or a zero quantity. */
const ORDERS = Array.from({ length: 250 }, (_, i) => ({
  id: i + 1,
  region: i % 37 === 5 ? 'mars' : REGIONS[i % 4]!,
  amt: i % 41 === 3 ? 'n/a' : (((i * 7.3) % 50) + 1).toFixed(2),
  qty: String(i % 29 === 7 ? 0 : 1 + (i % 5)),
  customer: `c${i % 23}`,
}));

let t: TestDb;
let base: string;
let tables: string;
let settings: DaemonSettings;
let server: Server;
let unauthorized = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      unauthorized++;
      res.writeHead(401).end();
      return;
    }
    if (url.pathname !== '/v2/orders') {
      res.writeHead(404).end();
      return;
    }
    const page = Number(url.searchParams.get('page'));
    const size = Number(url.searchParams.get('per_page'));
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ items: ORDERS.slice((page - 1) * size, page * size) }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };

  t = await openTestDb('tabular_pipeline');
  base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-pipeline-')));
  tables = join(base, 'tables');
  mkdirSync(join(tables, 'orders'), { recursive: true });
  settings = writeDaemonSettings({
    mongoUri: t.uri,
    database: t.dbName,
    dir: join(base, 'daemon'),
    worker: { leaseMs: 30_000, killGraceMs: 5_000 },
    extra: {
      dataDirs: { tables },
      tabular: {
        sources: {
          orders: {
            kind: 'http',
            baseUrl: `http://127.0.0.1:${port}/v2/`,
            headers: { Authorization: `Bearer ${TOKEN}` },
          },
          warehouse: { kind: 'mongodb', uri: t.uri, database: t.dbName },
        },
      },
      programs: { chromium: { path: CHROMIUM } },
    },
  });
  await startDaemonProcess(settings);
}, 150_000);

afterAll(async () => {
  await killAllDaemons();
  await t?.close();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(base, { recursive: true, force: true });
});

const lines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('the tabular example workflow', () => {
  it('runs from an HTTP API to a report, the totals agreeing with the served records', async () => {
    const example = readFileSync(
      join(import.meta.dirname, '../../docs/examples/tabular-pipeline.json'),
      'utf8',
    );
    const file = join(base, 'pipeline.json');
    writeFileSync(file, example.replaceAll('/srv/jobd/tables', tables));
    const { docs: done } = await submitWorkflowAndSettle(t.db, file, settings.file, 6, 240_000);
    for (const d of done) expect(d.state, `${d.type}: ${JSON.stringify(d.errors)}`).toBe('completed');
    expect(unauthorized).toBe(0);

    const dir = join(tables, 'orders');
    expect(lines(join(dir, 'raw.ndjson'))).toHaveLength(ORDERS.length);
    const convertible = ORDERS.filter((o) => o.amt !== 'n/a');
    expect(lines(join(dir, 'unconvertible.ndjson'))).toHaveLength(ORDERS.length - convertible.length);
    const valid = convertible.filter((o) => o.region !== 'mars' && Number(o.qty) >= 1);
    expect(lines(join(dir, 'valid.ndjson'))).toHaveLength(valid.length);
    expect(lines(join(dir, 'invalid.ndjson'))).toHaveLength(convertible.length - valid.length);

    // The aggregation, computed here from the served records.
    const groups = lines(join(dir, 'by-region.ndjson'));
    expect(groups.map((g) => g.region).sort()).toEqual([...REGIONS].sort());
    for (const region of REGIONS) {
      const rows = valid.filter((o) => o.region === region);
      const g = groups.find((x) => x.region === region)!;
      const revenue = rows.reduce((s, o) => s + Number(o.amt) * Number(o.qty), 0);
      const mean = rows.reduce((s, o) => s + Number(o.amt), 0) / rows.length;
      expect(g.orders).toBe(rows.length);
      expect(g.customers).toBe(new Set(rows.map((o) => o.customer)).size);
      expect(Math.abs((g.revenue as number) - revenue) / revenue).toBeLessThan(1e-9);
      expect(Math.abs((g.mean_amount as number) - mean) / mean).toBeLessThan(1e-9);
    }

    const stats = JSON.parse(readFileSync(join(dir, 'statistics.json'), 'utf8')) as {
      fields: Record<string, { count: number; max: number }>;
    };
    expect(stats.fields.qty).toMatchObject({ count: valid.length, max: 5 });
    const html = readFileSync(join(dir, 'report.html'), 'utf8');
    expect(html).toContain('Revenue by region');
    expect(html).not.toContain(TOKEN);
    expect(readFileSync(join(dir, 'report.pdf')).subarray(0, 5).toString('latin1')).toBe('%PDF-');

    // The same grouping in MongoDB: the valid rows in a collection, grouped by a data_aggregation job
    // through the daemon (the source handed to its process), give the file's groups.
    await t.db.collection('valid_orders').insertMany(lines(join(dir, 'valid.ndjson')));
    const shipped = JSON.parse(readFileSync(file, 'utf8')) as {
      jobs: Array<{ key: string; params: Record<string, unknown> }>;
    };
    const agg = shipped.jobs.find((j) => j.key === 'aggregate')!.params;
    const params = {
      source: 'warehouse',
      collection: 'valid_orders',
      output: join(dir, 'by-region-db.ndjson'),
      group_by: agg.group_by,
      metrics: agg.metrics,
    };
    const run = await runCli(JOBCTL_BIN, [
      'enqueue',
      'data_aggregation',
      '--params',
      JSON.stringify(params),
      '--wait',
      '--settings',
      settings.file,
    ]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const inDb = lines(join(dir, 'by-region-db.ndjson'));
    expect(inDb).toHaveLength(groups.length);
    for (const g of inDb) {
      const f = groups.find((x) => x.region === g.region)!;
      expect({ ...g, revenue: 0, mean_amount: 0 }).toEqual({ ...f, revenue: 0, mean_amount: 0 });
      expect(Math.abs((g.revenue as number) - (f.revenue as number))).toBeLessThan(
        1e-9 * (f.revenue as number),
      );
    }
  });
});
