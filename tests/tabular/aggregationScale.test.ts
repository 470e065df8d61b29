/**
 * data_aggregation on 10 million rows: numpy draws the rows, writes them as NDJSON and computes the
 * totals itself (exact integer sums of cents, min/max, distinct users from a bitmap); jobd aggregates
 * the file, spilling past its limit, and every group's totals must match.
 *
 * numpy writes each row at a fixed width (padding is JSON whitespace) so it can build the file with
 * array operations in seconds; 50 bytes a row, about 500 MB in the temp dir, removed after.
 */
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aggregateRecords } from '../../src/jobs/tabular/lib/aggregate.js';
import type { MetricSpec } from '../../src/jobs/tabular/lib/metrics.js';
import { recordingContext, tempDir } from '../data/helpers.js';

const ROWS = 10_000_000;

const PYTHON = String.raw`
import json, sys
import numpy as np
path, rows = sys.argv[1], int(sys.argv[2])
regions = ["north", "south", "east", "west", "centre"]
# {"r":"north"  ,"s":  7,"q":-5,"p":   0.05,"u":  3}\n  (50 bytes; spaces are JSON whitespace)
template = np.frombuffer(b'{"r":        ,"s":   ,"q":  ,"p":       ,"u":   }\n', dtype=np.uint8)
W = len(template)
assert W == 50
region_text = np.array([list(f'"{r}"'.ljust(8).encode()) for r in regions], dtype=np.uint8)
null_text = np.frombuffer(b"null   ", dtype=np.uint8)

def digits(a, width):
    # Right-aligned decimal text, leading zeros as spaces (the units digit always shown).
    out = np.empty((len(a), width), dtype=np.uint8)
    for k in range(width):
        p = 10 ** (width - 1 - k)
        d = (a // p) % 10
        out[:, k] = np.where((a >= p) | (k == width - 1), 48 + d, 32)
    return out

rng = np.random.default_rng(20261130)
G = 1000
rows_n = np.zeros(G, np.int64); qty = np.zeros(G, np.int64); cents = np.zeros(G, np.int64)
priced = np.zeros(G, np.int64)
lo = np.full(G, np.iinfo(np.int64).max); hi = np.full(G, -1, np.int64)
seen = np.zeros((G, 1000), dtype=bool)
with open(path, "wb") as f:
    left = rows
    while left > 0:
        n = min(left, 1_000_000); left -= n
        r = rng.integers(0, 5, n); s = rng.integers(0, 200, n); q = rng.integers(-5, 45, n)
        c = rng.integers(0, 1_000_000, n); null = rng.random(n) < 0.03; u = rng.integers(0, 1000, n)
        b = np.tile(template, (n, 1))
        b[:, 5:13] = region_text[r]
        b[:, 18:21] = digits(s, 3)
        qt = digits(np.abs(q), 2); qt[q < 0, 0] = ord("-")
        b[:, 26:28] = qt
        pt = np.concatenate([digits(c // 100, 4), np.full((n, 1), ord("."), np.uint8), digits(c % 100, 2)], axis=1)
        # The fraction's tens digit must show even when it is 0 (digits() would blank it).
        pt[:, 5] = 48 + (c % 100) // 10
        pt[null] = null_text
        b[:, 33:40] = pt
        b[:, 45:48] = digits(u, 3)
        f.write(b.tobytes())
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
let want: Record<string, Want>;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('aggregate-scale'));
  input = join(dir, 'rows.ndjson');
  want = JSON.parse(
    execFileSync('python3', ['-c', PYTHON, input, String(ROWS)], { encoding: 'utf8', maxBuffer: 1 << 26 }),
  ) as Record<string, Want>;
}, 600_000);
afterAll(() => cleanup());

describe('data_aggregation at scale', () => {
  it("gives numpy's totals on 10 million rows, spilling past its limit", async () => {
    const output = join(dir, 'groups.ndjson');
    // 1,000 groups × up to 1,000 users: over a million entries, so the groups spill once or twice.
    const r = await aggregateRecords(
      { input, output, groupBy: ['r', 's'], metrics: METRICS, spillLimit: 1_000_000 },
      recordingContext(),
    );
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
