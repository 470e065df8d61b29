/**
 * data_aggregation on files against numpy, the same NDJSON file in one run. Prints ONE JSON document
 * on stdout when run directly (progress goes to stderr); `benchTabularAggregation()` returns it.
 *
 *   node --import tsx bench/tabularAggregation.ts                  10 million rows
 *   node --import tsx bench/tabularAggregation.ts --rows=1000000   fewer (BENCH_ROWS works too)
 *   BENCH_DIR=/somewhere ...                                       where the file goes (default: the temp dir)
 *
 * The rows: region × shop (1,000 groups), an integer qty, a float price (3 % null), a user id out of
 * 100,000; metrics count, sum, mean, min, max and distinct users. The distinct (group, user) pairs
 * outnumber the default spill limit many times over, so the figure includes spilling and merging.
 * jobd's aggregation runs in a child process of its own, so its peak RSS is its own; python3 reads the
 * file with json.loads (as fast as the standard library parses JSON lines) and groups with numpy.
 * Both sides' totals are compared (counts, integer sums and distinct counts exactly). CPU seconds are
 * reported beside wall seconds: on a loaded machine they are the fairer comparison.
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MetricSpec } from '../src/jobs/tabular/lib/metrics.js';

const REGIONS = ['north', 'south', 'east', 'west', 'centre'];
const METRICS: MetricSpec[] = [
  { name: 'rows', op: 'count', field: '*' },
  { name: 'qty', op: 'sum', field: 'qty' },
  { name: 'price_mean', op: 'mean', field: 'price' },
  { name: 'lo', op: 'min', field: 'price' },
  { name: 'hi', op: 'max', field: 'price' },
  { name: 'users', op: 'distinct_count', field: 'user' },
];

const log = (msg: string): void => void process.stderr.write(`[bench:tabularAggregation] ${msg}\n`);
const round = (n: number, d = 3): number => Math.round(n * 10 ** d) / 10 ** d;

/** The bench's rows, the same every run (a seeded generator): region, shop, qty, price, user. */
export function* syntheticRows(rows: number): Generator<Record<string, unknown>> {
  let seed = 7;
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < rows; i++) {
    yield {
      region: REGIONS[Math.floor(rnd() * 5)],
      shop: Math.floor(rnd() * 200),
      qty: Math.floor(rnd() * 50) - 5,
      price: rnd() < 0.03 ? null : Math.round(rnd() * 1e6) / 100 - 1000,
      user: Math.floor(rnd() * 100_000),
    };
  }
}

async function writeRows(path: string, rows: number): Promise<void> {
  const out = createWriteStream(path);
  let buf = '';
  for (const r of syntheticRows(rows)) {
    buf += `${JSON.stringify(r)}\n`;
    if (buf.length > 1 << 20) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

const PYTHON = `
import json, resource, sys, time
import numpy as np
t0 = time.perf_counter()
regions = {"north": 0, "south": 1, "east": 2, "west": 3, "centre": 4}
cols = [[], [], [], [], []]
def flush(buf):
    a = np.array(buf, dtype=np.float64).reshape(-1, 5) if buf else np.zeros((0, 5))
    for i in range(5):
        cols[i].append(a[:, i])
buf = []
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        p = r["price"]
        buf.extend((regions[r["region"]], r["shop"], r["qty"], np.nan if p is None else p, r["user"]))
        if len(buf) >= 5_000_000:
            flush(buf); buf = []
flush(buf)
region, shop, qty, price, user = (np.concatenate(c) for c in cols)
t1 = time.perf_counter()
key = region.astype(np.int64) * 1000 + shop.astype(np.int64)
uniq, inv = np.unique(key, return_inverse=True)
g = len(uniq)
has = ~np.isnan(price)
rows = np.bincount(inv, minlength=g)
qty_sum = np.bincount(inv, weights=qty, minlength=g)
n_price = np.bincount(inv[has], minlength=g)
price_sum = np.bincount(inv[has], weights=price[has], minlength=g)
lo = np.full(g, np.inf); np.minimum.at(lo, inv[has], price[has])
hi = np.full(g, -np.inf); np.maximum.at(hi, inv[has], price[has])
pairs = np.unique(inv.astype(np.int64) * 1_000_000 + user.astype(np.int64))
users = np.bincount(pairs // 1_000_000, minlength=g)
t2 = time.perf_counter()
names = {v: k for k, v in regions.items()}
out = {}
for i, k in enumerate(uniq):
    # A group whose prices are all null has no min or max: null, as jobd writes it.
    fin = lambda v: float(v) if np.isfinite(v) else None
    out[f"{names[int(k // 1000)]}|{int(k % 1000)}"] = [int(rows[i]), int(qty_sum[i]), int(users[i]), fin(lo[i]), fin(hi[i])]
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"parse_seconds": t1 - t0, "group_seconds": t2 - t1, "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "groups": out}))
`;

function runChild(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (err += c.toString()));
    p.on('error', reject);
    p.on('close', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`)),
    );
  });
}

/** The child side: runs the aggregation and prints its figures. */
async function childMain(input: string, output: string, spillLimit: number): Promise<void> {
  const { aggregateRecords } = await import('../src/jobs/tabular/lib/aggregate.js');
  const ctx = { signal: new AbortController().signal, progress: () => {}, log: () => {} };
  const t = performance.now();
  const r = await aggregateRecords(
    { input, output, groupBy: ['region', 'shop'], metrics: METRICS, spillLimit },
    ctx,
  );
  const seconds = (performance.now() - t) / 1000;
  process.stdout.write(
    JSON.stringify({
      seconds,
      cpu_seconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6,
      peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
      result: r,
    }),
  );
}

export interface TabularAggregationOptions {
  rows?: number;
  spillLimit?: number;
  dir?: string;
}

export async function benchTabularAggregation(
  opts: TabularAggregationOptions = {},
): Promise<Record<string, unknown>> {
  const rows = opts.rows ?? 10_000_000;
  const spillLimit = opts.spillLimit ?? 200_000;
  const dir = await mkdtemp(join(opts.dir ?? process.env.BENCH_DIR ?? tmpdir(), 'jobd-bench-agg-'));
  try {
    const input = join(dir, 'rows.ndjson');
    const output = join(dir, 'groups.ndjson');
    log(`writing ${rows} rows`);
    await writeRows(input, rows);
    const bytes = (await stat(input)).size;
    log(`jobd: aggregating ${bytes} bytes (spill limit ${spillLimit})`);
    const self = fileURLToPath(import.meta.url);
    const jobd = JSON.parse(
      await runChild(process.execPath, [
        '--import',
        'tsx',
        self,
        '--child',
        input,
        output,
        String(spillLimit),
      ]),
    ) as { seconds: number; cpu_seconds: number; peak_rss_bytes: number; result: Record<string, number> };
    log(`numpy: reading and grouping the same file`);
    const t = performance.now();
    const py = JSON.parse(await runChild('python3', ['-c', PYTHON, input])) as {
      parse_seconds: number;
      group_seconds: number;
      cpu_seconds: number;
      peak_rss_bytes: number;
      groups: Record<string, [number, number, number, number | null, number | null]>;
    };
    const pySeconds = (performance.now() - t) / 1000;
    const groups = (await readFile(output, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, number | string>);
    const mismatches = groups.filter((g) => {
      const w = py.groups[`${g.region}|${g.shop}`];
      return !w || w[0] !== g.rows || w[1] !== g.qty || w[2] !== g.users || w[3] !== g.lo || w[4] !== g.hi;
    }).length;
    return {
      bench: 'tabular_aggregation',
      rows,
      input_bytes: bytes,
      groups: groups.length,
      cpus: availableParallelism(),
      load_average_1m: round(loadavg()[0]!, 2),
      jobd_files: {
        seconds: round(jobd.seconds),
        rows_per_s: Math.round(rows / jobd.seconds),
        mb_per_s: round(bytes / 1e6 / jobd.seconds, 1),
        cpu_seconds: round(jobd.cpu_seconds),
        rows_per_cpu_s: Math.round(rows / jobd.cpu_seconds),
        peak_rss_bytes: jobd.peak_rss_bytes,
        spill_limit: spillLimit,
        spilled_runs: jobd.result.spilled_runs,
        merge_passes: jobd.result.merge_passes,
      },
      numpy_reference: {
        seconds: round(pySeconds),
        rows_per_s: Math.round(rows / pySeconds),
        cpu_seconds: round(py.cpu_seconds),
        rows_per_cpu_s: Math.round(rows / py.cpu_seconds),
        parse_seconds: round(py.parse_seconds),
        group_seconds: round(py.group_seconds),
        peak_rss_bytes: py.peak_rss_bytes,
      },
      ratio: round(pySeconds / jobd.seconds, 2),
      totals_agree: mismatches === 0 && groups.length === Object.keys(py.groups).length,
      mismatched_groups: mismatches,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--child');
  if (i >= 0) {
    const [input, output, limit] = process.argv.slice(i + 1);
    await childMain(input!, output!, Number(limit));
  } else {
    const arg = process.argv.find((a) => a.startsWith('--rows='));
    const rows = Number(arg ? arg.slice('--rows='.length) : (process.env.BENCH_ROWS ?? 10_000_000));
    if (!Number.isInteger(rows) || rows < 1) {
      process.stderr.write(`--rows must be a positive integer; got ${arg ?? process.env.BENCH_ROWS}\n`);
      process.exit(2);
    }
    process.stdout.write(`${JSON.stringify(await benchTabularAggregation({ rows }), null, 2)}\n`);
  }
}
