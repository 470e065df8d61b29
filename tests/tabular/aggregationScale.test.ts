/**
 * data_aggregation on 10 million rows: numpy draws the rows, writes them as NDJSON and computes the
 * totals itself (exact integer sums of cents, min/max, distinct users from a bitmap); jobd aggregates
 * them, spilling past its limit, and every group's totals must match.
 *
 * numpy writes each row at a fixed width (padding is JSON whitespace), every field's text looked up
 * from a table of its values, so it builds the rows with array operations in seconds; 50 bytes a row.
 * It writes them into a named pipe that jobd reads as they come: drawing and aggregating overlap, and
 * the 500 MB never touch the disk.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregateRecords } from '../../src/jobs/tabular/lib/aggregate.js';
import type { MetricSpec } from '../../src/jobs/tabular/lib/metrics.js';
import { recordingContext, tempDir } from '../data/helpers.js';

const ROWS = 10_000_000;

const PYTHON = String.raw`
import fcntl, json, sys
import numpy as np
path, rows = sys.argv[1], int(sys.argv[2])
regions = ["north", "south", "east", "west", "centre"]
# {"r":"north"  ,"s":  7,"q":-5,"p":   0.05,"u":  3}\n  (50 bytes; spaces are JSON whitespace)
template = np.frombuffer(b'{"r":        ,"s":   ,"q":  ,"p":       ,"u":   }\n', dtype=np.uint8)
W = len(template)
assert W == 50
region_text = np.array([list(f'"{r}"'.ljust(8).encode()) for r in regions], dtype=np.uint8)
null_text = np.frombuffer(b"null   ", dtype=np.uint8)

def table(values, text):
    # The fixed-width bytes of each value, looked up by index: one gather a column, no per-digit passes.
    return np.array([list(text(v).encode()) for v in values], dtype=np.uint8)

S_TEXT = table(range(200), lambda v: f"{v:3d}")
Q_TEXT = table(range(-5, 45), lambda v: f"{v:2d}")
U_TEXT = table(range(1000), lambda v: f"{v:3d}")
EUROS = table(range(10000), lambda v: f"{v:4d}.")
CENTS = table(range(100), lambda v: f"{v:02d}")

rng = np.random.default_rng(20261130)
G = 1000
rows_n = np.zeros(G, np.int64); qty = np.zeros(G, np.int64); cents = np.zeros(G, np.int64)
priced = np.zeros(G, np.int64)
lo = np.full(G, np.iinfo(np.int64).max); hi = np.full(G, -1, np.int64)
seen = np.zeros((G, 1000), dtype=bool)
with open(path, "wb") as f:
    try:
        # A 1 MB pipe (the unprivileged maximum) rather than 64 KB: 16 times fewer hand-overs between
        # writer and reader, each a wait for the scheduler on a loaded machine.
        fcntl.fcntl(f.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    left = rows
    while left > 0:
        n = min(left, 1_000_000); left -= n
        r = rng.integers(0, 5, n); s = rng.integers(0, 200, n); q = rng.integers(-5, 45, n)
        c = rng.integers(0, 1_000_000, n); null = rng.random(n) < 0.03; u = rng.integers(0, 1000, n)
        b = np.tile(template, (n, 1))
        b[:, 5:13] = region_text[r]
        b[:, 18:21] = S_TEXT[s]
        b[:, 26:28] = Q_TEXT[q + 5]
        b[:, 33:38] = EUROS[c // 100]
        b[:, 38:40] = CENTS[c % 100]
        b[null, 33:40] = null_text
        b[:, 45:48] = U_TEXT[u]
        f.write(memoryview(b))
        g = r * 200 + s
        rows_n += np.bincount(g, minlength=G); qty += np.bincount(g, weights=q, minlength=G).astype(np.int64)
        has = ~null
        gp, cp = g[has], c[has]
        priced += np.bincount(gp, minlength=G)
        # Integer cents: exact sums, whatever the order.
        np.add.at(cents, gp, cp)
        np.minimum.at(lo, gp, cp); np.maximum.at(hi, gp, cp)
        seen[g, u] = True
out = {}
for g in range(G):
    if rows_n[g] == 0: continue
    out[f"{regions[g // 200]}|{g % 200}"] = dict(rows=int(rows_n[g]), qty=int(qty[g]), cents=int(cents[g]), priced=int(priced[g]),
        lo=int(lo[g]) if priced[g] else None, hi=int(hi[g]) if priced[g] else None, users=int(seen[g].sum()))
print(json.dumps(out))
`;

const METRICS: MetricSpec[] = [
  { name: 'rows', op: 'count', field: '*' },
  { name: 'qty', op: 'sum', field: 'q' },
  { name: 'price_sum', op: 'sum', field: 'p' },
  { name: 'price_mean', op: 'mean', field: 'p' },
  { name: 'priced', op: 'count', field: 'p' },
  { name: 'lo', op: 'min', field: 'p' },
  { name: 'hi', op: 'max', field: 'p' },
  { name: 'users', op: 'distinct_count', field: 'u' },
];

interface Want {
  rows: number;
  qty: number;
  cents: number;
  priced: number;
  lo: number | null;
  hi: number | null;
  users: number;
}

let dir: string;
let cleanup: () => Promise<void>;
let input: string;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('aggregate-scale'));
  input = join(dir, 'rows.ndjson');
  execFileSync('mkfifo', [input]);
});
afterAll(() => cleanup());

/** numpy writing the rows into the pipe; its totals when it is done. */
function numpyRows(): { totals: Promise<Record<string, Want>>; kill(): void } {
  const p = spawn('python3', ['-c', PYTHON, input, String(ROWS)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.on('data', (c: Buffer) => (out += String(c)));
  p.stderr.on('data', (c: Buffer) => (err += String(c)));
  const totals = new Promise<Record<string, Want>>((res, rej) => {
    p.once('error', rej);
    p.once('close', (code, signal) =>
      code === 0
        ? res(JSON.parse(out) as Record<string, Want>)
        : rej(new Error(`numpy exited ${code ?? `by ${signal}`}: ${err.slice(-2000)}`)),
    );
  });
  return { totals, kill: () => void p.kill('SIGKILL') };
}

describe('data_aggregation at scale', () => {
  it("gives numpy's totals on 10 million rows, spilling past its limit", async () => {
    const output = join(dir, 'groups.ndjson');
    const numpy = numpyRows();
    // numpy failing before it opens the pipe would leave the read waiting: its error ends the wait.
    const failed = numpy.totals.then(() => new Promise<never>(() => {}));
    // 1,000 groups × up to 1,000 users: over a million entries, so the groups spill once or twice.
    const r = await Promise.race([
      aggregateRecords(
        { input, output, groupBy: ['r', 's'], metrics: METRICS, spillLimit: 1_000_000 },
        recordingContext(),
      ),
      failed,
    ]).catch((err: unknown) => {
      numpy.kill();
      throw err;
    });
    const want = await numpy.totals;
    expect(r.rows).toBe(ROWS);
    expect(r.spilled_runs).toBeGreaterThanOrEqual(2);
    const groups = (await readFile(output, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, number | string | null>);
    expect(groups.length).toBe(Object.keys(want).length);
    expect(groups.length).toBe(r.groups);
    let total = 0;
    for (const g of groups) {
      const w = want[`${g.r}|${g.s}`]!;
      expect(w, `group ${g.r}|${g.s}`).toBeDefined();
      total += g.rows as number;
      // Counts, integer sums, min, max and distinct counts exactly; float sums to rounding.
      expect({
        key: `${g.r}|${g.s}`,
        rows: g.rows,
        qty: g.qty,
        priced: g.priced,
        lo: g.lo,
        hi: g.hi,
        users: g.users,
      }).toEqual({
        key: `${g.r}|${g.s}`,
        rows: w.rows,
        qty: w.qty,
        priced: w.priced,
        lo: w.lo === null ? null : w.lo / 100,
        hi: w.hi === null ? null : w.hi / 100,
        users: w.users,
      });
      const sum = w.cents / 100;
      expect(Math.abs((g.price_sum as number) - sum)).toBeLessThanOrEqual(1e-9 * Math.abs(sum));
      const mean = sum / w.priced;
      expect(Math.abs((g.price_mean as number) - mean)).toBeLessThanOrEqual(1e-9 * Math.abs(mean));
    }
    expect(total).toBe(ROWS);
  }, 600_000);
});
