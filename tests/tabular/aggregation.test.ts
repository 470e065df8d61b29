/**
 * data_aggregation's core on a real file of synthetic rows: the totals equal those the system python3
 * computes with numpy from the same file, with a spill limit low enough that the groups go through
 * dozens of sorted runs and several merge passes; and spilling or not gives the same bytes.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregateRecords } from '../../src/jobs/tabular/lib/aggregate.js';
import type { MetricSpec } from '../../src/jobs/tabular/lib/metrics.js';
import { cleanStaleTemps } from '../../src/jobs/lib/atomic.js';
import { recordingContext, runCoreChild, tempDir, waitUntil } from '../data/helpers.js';

const ROWS = 250_000;
const REGIONS = ['north', 'south', 'east', 'west', 'centre'];

let dir: string;
let cleanup: () => Promise<void>;
let input: string;

/** Deterministic rows: region × shop (about 1,000 groups), integer qty, float price (3 % null), user ids. */
async function writeRows(path: string): Promise<void> {
  // mulberry32: a small seeded generator with 32-bit integer arithmetic.
  let seed = 42;
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = createWriteStream(path);
  let buf = '';
  for (let i = 0; i < ROWS; i++) {
    const row = {
      region: REGIONS[Math.floor(rnd() * REGIONS.length)],
      shop: Math.floor(rnd() * 200),
      qty: Math.floor(rnd() * 50) - 5,
      price: rnd() < 0.03 ? null : Math.round(rnd() * 1e6) / 100 - 1000,
      user: `u${Math.floor(rnd() * 3000)}`,
    };
    buf += JSON.stringify(row) + '\n';
    if (buf.length > 1 << 16) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'finish');
}

// numpy's grouping of the same file: np.unique keys, bincount sums, minimum/maximum.at, unique pairs.
const PYTHON = `
import json, sys
import numpy as np
region, shop, qty, price, user = [], [], [], [], []
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        region.append(r["region"]); shop.append(r["shop"]); qty.append(r["qty"])
        price.append(np.nan if r["price"] is None else r["price"]); user.append(int(r["user"][1:]))
keys = np.array([f"{a}|{b}" for a, b in zip(region, shop)])
uniq, inv = np.unique(keys, return_inverse=True)
g = len(uniq)
qty = np.array(qty, dtype=np.int64); price = np.array(price); user = np.array(user, dtype=np.int64)
has = ~np.isnan(price)
rows = np.bincount(inv, minlength=g)
qty_sum = np.bincount(inv, weights=qty, minlength=g)
n_price = np.bincount(inv[has], minlength=g)
price_sum = np.bincount(inv[has], weights=price[has], minlength=g)
lo = np.full(g, np.inf); np.minimum.at(lo, inv[has], price[has])
hi = np.full(g, -np.inf); np.maximum.at(hi, inv[has], price[has])
pairs = np.unique(inv.astype(np.int64) * 1_000_000 + user)
users = np.bincount(pairs // 1_000_000, minlength=g)
out = {}
for i, k in enumerate(uniq):
    out[k] = dict(rows=int(rows[i]), qty=int(qty_sum[i]), price_sum=float(price_sum[i]),
                  price_mean=float(price_sum[i] / n_price[i]) if n_price[i] else None,
                  lo=float(lo[i]) if n_price[i] else None, hi=float(hi[i]) if n_price[i] else None, users=int(users[i]))
print(json.dumps(out))
`;

const METRICS: MetricSpec[] = [
  { name: 'rows', op: 'count', field: '*' },
  { name: 'qty', op: 'sum', field: 'qty' },
  { name: 'price_sum', op: 'sum', field: 'price' },
  { name: 'price_mean', op: 'mean', field: 'price' },
  { name: 'lo', op: 'min', field: 'price' },
  { name: 'hi', op: 'max', field: 'price' },
  { name: 'users', op: 'distinct_count', field: 'user' },
];

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('aggregate'));
  input = join(dir, 'rows.ndjson');
  await writeRows(input);
});
afterAll(() => cleanup());

describe('data_aggregation on files', () => {
  it("gives numpy's totals while spilling through many sorted runs and merge passes", async () => {
    const output = join(dir, 'groups.ndjson');
    const ctx = recordingContext();
    const r = await aggregateRecords(
      { input, output, groupBy: ['region', 'shop'], metrics: METRICS, spillLimit: 5_000, fanIn: 8 },
      ctx,
    );
    const want = JSON.parse(
      execFileSync('python3', ['-c', PYTHON, input], { encoding: 'utf8', maxBuffer: 1 << 26 }),
    ) as Record<string, Record<string, number | null>>;
    expect(r.rows).toBe(ROWS);
    expect(r.spilled_runs).toBeGreaterThan(40);
    expect(r.merge_passes).toBeGreaterThan(1);
    const groups = (await readFile(output, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, number | string>);
    expect(r.groups).toBe(Object.keys(want).length);
    expect(groups.length).toBe(r.groups);
    const got = Object.fromEntries(groups.map((g) => [`${g.region}|${g.shop}`, g]));
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    let exact = 0;
    for (const [key, w] of Object.entries(want)) {
      const g = got[key]!;
      // Counts, integer sums, min, max and distinct counts are exact; float sums agree to rounding.
      expect({ key, rows: g.rows, qty: g.qty, lo: g.lo, hi: g.hi, users: g.users }).toEqual({
        key,
        rows: w.rows,
        qty: w.qty,
        lo: w.lo,
        hi: w.hi,
        users: w.users,
      });
      expect(Math.abs((g.price_sum as number) - w.price_sum!)).toBeLessThanOrEqual(
        1e-9 * Math.abs(w.price_sum!),
      );
      if (w.price_mean === null) expect(g.price_mean).toBeNull();
      else
        expect(Math.abs((g.price_mean as number) - w.price_mean!)).toBeLessThanOrEqual(
          1e-9 * Math.abs(w.price_mean!),
        );
      exact += 1;
    }
    expect(exact).toBe(groups.length);
    expect(ctx.progressed.at(-1)!.percent).toBeGreaterThanOrEqual(80);

    // All in memory: the same groups, byte for byte (same order, same sums).
    const inMemory = join(dir, 'groups-memory.ndjson');
    const m = await aggregateRecords(
      { input, output: inMemory, groupBy: ['region', 'shop'], metrics: METRICS, spillLimit: 10_000_000 },
      recordingContext(),
    );
    expect(m.spilled_runs).toBe(0);
    expect(await readFile(inMemory, 'utf8')).toBe(await readFile(output, 'utf8'));
  }, 600_000);

  it('leaves no output when SIGKILLed mid-spill; the next run clears the dead runs and aggregates exactly', async () => {
    // The child reads a FIFO the test writes: it is mid-run, with runs on disk, for as long as the test wants.
    const fifo = join(dir, 'feed.ndjson');
    execFileSync('mkfifo', [fifo]);
    const output = join(dir, 'killed.ndjson');
    const spec = { input: fifo, output, groupBy: ['region'], metrics: METRICS, spillLimit: 100 };
    const child = runCoreChild('../../tabular/lib/aggregate', 'aggregateRecords', spec, {});
    const rows = Array.from({ length: 3000 }, (_, i) => ({
      region: REGIONS[i % 5],
      qty: i,
      price: i / 4,
      user: `u${i % 700}`,
    }));
    const text = rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
    const feed = createWriteStream(fifo);
    // Writing on after the reader is killed is a broken pipe: expected here.
    feed.on('error', () => {});
    feed.write(text);
    const temps = async () => (await readdir(dir)).filter((n) => n.startsWith('.killed.ndjson.jobd-tmp-'));
    const spillDir = await waitUntil(
      async () => {
        for (const t of await temps()) {
          const runs = await readdir(join(dir, t)).catch(() => [] as string[]);
          if (runs.length >= 5) return t;
        }
        return undefined;
      },
      { what: 'the child to spill sorted runs', timeoutMs: 60_000 },
    );
    child.proc.kill('SIGKILL');
    expect((await child.exited).signal).toBe('SIGKILL');
    feed.destroy();
    await expect(readFile(output)).rejects.toThrow(/ENOENT/);
    expect(await temps()).toContain(spillDir);

    // What the job type does before it writes: the dead run's temporaries go.
    expect((await cleanStaleTemps(output)).length).toBeGreaterThanOrEqual(1);
    expect(await temps()).toEqual([]);
    const plain = join(dir, 'feed-file.ndjson');
    await writeFile(plain, text);
    await aggregateRecords({ ...spec, input: plain }, recordingContext());
    const got = (await readFile(output, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(got.map((g) => [g.region, g.rows, g.qty, g.users])).toEqual(
      [...REGIONS].sort().map((r) => {
        const mine = rows.filter((x) => x.region === r);
        return [r, mine.length, mine.reduce((a, x) => a + x.qty, 0), new Set(mine.map((x) => x.user)).size];
      }),
    );
  }, 120_000);

  it('reads a named pipe, its progress in bytes read (a pipe has no size to take a percentage of)', async () => {
    const fifo = join(dir, 'pipe.ndjson');
    execFileSync('mkfifo', [fifo]);
    const text = Array.from({ length: 2000 }, (_, i) => JSON.stringify({ region: REGIONS[i % 5], qty: i }))
      .join('\n')
      .concat('\n');
    const feed = createWriteStream(fifo);
    feed.end(text);
    const ctx = recordingContext();
    const r = await aggregateRecords(
      {
        input: fifo,
        output: join(dir, 'pipe-groups.ndjson'),
        groupBy: ['region'],
        metrics: [{ name: 'qty', op: 'sum', field: 'qty' }],
        spillLimit: 1000,
      },
      ctx,
    );
    expect(r).toMatchObject({ rows: 2000, groups: 5 });
    const reading = ctx.progressed.filter((p) => /bytes read/.test(p.message ?? ''));
    expect(reading.length).toBeGreaterThan(0);
    expect(reading.every((p) => p.percent === 0)).toBe(true);
    expect(reading.at(-1)!.message).toBe(`data_aggregation: ${Buffer.byteLength(text)} bytes read`);
  });
});
