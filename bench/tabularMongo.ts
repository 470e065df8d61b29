/**
 * bench:tabular's `mongo` section: data_aggregation in MongoDB. The aggregation section's rows are
 * inserted into a collection of the embedded server (or of BENCH_MONGODB_URI), then grouped by
 * data_aggregation's MongoDB core (one $group pipeline), in a child process of its own: rows/s by wall
 * and by CPU, and the child's peak RSS (with the embedded server, the server's work is in that child
 * too). The groups' row counts and qty sums are checked against totals kept while the rows were made.
 *
 *   node --import tsx bench/tabularMongo.ts [--rows=N]      (default 1,000,000; needs `npm run build`)
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Section } from './tabular.js';
import { syntheticRows } from './tabularAggregation.js';

const ROOT = resolve(import.meta.dirname, '..');
async function child(rows: number, output: string): Promise<void> {
  const { MongoClient } = await import('mongodb');
  const { aggregateInMongo } = await import('../src/jobs/tabular/lib/aggregateMongo.js');
  let uri = process.env.BENCH_MONGODB_URI;
  let stop = async (): Promise<void> => {};
  if (!uri) {
    const { startEmbeddedServer } = (await import(
      pathToFileURL(join(ROOT, 'dist/embedded/index.js')).href
    )) as typeof import('../src/embedded/index.js');
    const server = await startEmbeddedServer({ port: 0 });
    uri = server.uri;
    stop = () => server.close();
  }
  const client = await MongoClient.connect(uri);
  const coll = client.db('jobd_bench_tabular').collection('rows');
  await coll.drop().catch(() => undefined);
  const expected = new Map<string, [number, number]>();
  let batch: Record<string, unknown>[] = [];
  const t0 = performance.now();
  for (const r of syntheticRows(rows)) {
    const k = `${String(r.region)}|${String(r.shop)}`;
    const e = expected.get(k) ?? [0, 0];
    e[0] += 1;
    e[1] += r.qty as number;
    expected.set(k, e);
    batch.push(r);
    if (batch.length === 10_000) {
      await coll.insertMany(batch, { ordered: false });
      batch = [];
    }
  }
  if (batch.length) await coll.insertMany(batch, { ordered: false });
  const insertSeconds = (performance.now() - t0) / 1000;
  const cpu0 = process.cpuUsage();
  const t1 = performance.now();
  const r = await aggregateInMongo(
    {
      source: 'bench',
      collection: 'rows',
      groupBy: ['region', 'shop'],
      metrics: [
        { name: 'rows', op: 'count', field: '*' },
        { name: 'qty', op: 'sum', field: 'qty' },
        { name: 'price', op: 'mean', field: 'price' },
        { name: 'low', op: 'min', field: 'price' },
        { name: 'high', op: 'max', field: 'price' },
        { name: 'users', op: 'distinct_count', field: 'user' },
      ],
      output,
      batchSize: 1000,
    },
    { signal: new AbortController().signal, progress: () => {}, log: () => {} },
    { sources: { bench: { kind: 'mongodb', uri, database: 'jobd_bench_tabular' } } },
  );
  const seconds = (performance.now() - t1) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const groups = (await readFile(output, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { region: string; shop: number; rows: number; qty: number });
  const mismatched = groups.filter((g) => {
    const e = expected.get(`${g.region}|${g.shop}`);
    return !e || e[0] !== g.rows || e[1] !== g.qty;
  }).length;
  await client.close();
  await stop();
  process.stdout.write(
    JSON.stringify({
      server: process.env.BENCH_MONGODB_URI ? 'BENCH_MONGODB_URI' : 'embedded (in this process)',
      rows,
      groups: r.groups,
      insert_seconds: Math.round(insertSeconds * 1000) / 1000,
      seconds: Math.round(seconds * 1000) / 1000,
      rows_per_s: Math.round(rows / seconds),
      cpu_seconds: Math.round(((cpu.user + cpu.system) / 1e6) * 1000) / 1000,
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
      totals_agree: mismatched === 0 && groups.length === expected.size,
      mismatched_groups: mismatched,
    }),
  );
}

function run(args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`bench child exited ${code}`))));
  });
}

export async function benchTabularMongo(rows: number, dir?: string): Promise<Record<string, unknown>> {
  const d = await mkdtemp(join(dir ?? tmpdir(), 'jobd-bench-mongo-'));
  try {
    return JSON.parse(await run(['--child', String(rows), join(d, 'groups.ndjson')])) as Record<
      string,
      unknown
    >;
  } finally {
    await rm(d, { recursive: true, force: true });
  }
}

export const section: Section = {
  name: 'aggregation_in_mongodb',
  run: (b) => {
    const arg = process.argv.find((a) => a.startsWith('--mongo-rows='))?.slice('--mongo-rows='.length);
    const rows = Number(arg ?? 1_000_000);
    if (!Number.isInteger(rows) || rows < 1)
      throw new Error(`--mongo-rows must be a positive integer; got ${arg}`);
    b.log(`MongoDB: ${rows} rows`);
    return benchTabularMongo(rows, b.dir);
  },
};

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) {
    await child(Number(process.argv[i + 1]), process.argv[i + 2]!);
  } else {
    const arg = process.argv.find((a) => a.startsWith('--rows='))?.slice('--rows='.length);
    process.stdout.write(`${JSON.stringify(await benchTabularMongo(Number(arg ?? 1_000_000)), null, 2)}\n`);
  }
}
