/**
 * Exact order statistics and histograms over values that may not fit in memory. A field's values live
 * in a `ValueSource`: in memory, or in a spill file of float64s that is scanned as often as needed.
 * Ranks are found by bucket counting over [min, max] (one scan), then only the buckets holding the
 * wanted ranks are collected and sorted (another scan); a bucket still larger than the memory budget
 * is bucketed again inside its own exact min and max. Every answer is an exact value of the data.
 */
import { open } from 'node:fs/promises';

/** Visits every value (in any order); `scan` may be called many times. */
export interface ValueSource {
  count: number;
  scan(visit: (v: number) => void): Promise<void>;
}

const BUCKETS = 1 << 16;
const CHUNK = 1 << 17; // float64s read per file read (1 MiB)

/** The values of a spill file written as native float64s. */
export function fileSource(path: string, count: number, signal?: AbortSignal): ValueSource {
  return {
    count,
    async scan(visit) {
      const fh = await open(path, 'r');
      try {
        const buf = new Float64Array(CHUNK);
        const bytes = new Uint8Array(buf.buffer);
        let carry = 0; // bytes of a value split across reads (reads are not promised to be whole)
        let seen = 0;
        for (;;) {
          signal?.throwIfAborted();
          const { bytesRead } = await fh.read(bytes, carry, bytes.length - carry, null);
          const have = carry + bytesRead;
          const whole = Math.floor(have / 8);
          for (let i = 0; i < whole; i++) visit(buf[i]!);
          seen += whole;
          carry = have - whole * 8;
          if (carry > 0) bytes.copyWithin(0, whole * 8, have);
          if (bytesRead === 0) break;
        }
        // A short or long file would give wrong ranks: refuse it rather than answer.
        if (seen !== count || carry !== 0) {
          throw new Error(`${path}: holds ${seen} values and ${carry} stray bytes, expected ${count} values`);
        }
      } finally {
        await fh.close();
      }
    },
  };
}

export function memorySource(values: Float64Array): ValueSource {
  return {
    count: values.length,
    scan(visit) {
      for (let i = 0; i < values.length; i++) visit(values[i]!);
      return Promise.resolve();
    },
  };
}

/** Bucket of `v` in [lo, hi]: monotone in v (halving keeps hi - lo finite for any finite pair). */
function bucketer(lo: number, hi: number): (v: number) => number {
  const width = hi * 0.5 - lo * 0.5;
  return (v) => {
    const b = Math.floor(((v * 0.5 - lo * 0.5) / width) * BUCKETS);
    return b < 0 ? 0 : b >= BUCKETS ? BUCKETS - 1 : b;
  };
}

/**
 * The values at the given 0-based ranks of the sorted values of `src` (min and max known), using at
 * most `budget` values of memory at a time (beyond fixed bucket tables).
 */
export async function selectRanks(
  src: ValueSource,
  ranks: readonly number[],
  lo: number,
  hi: number,
  budget: number,
): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  const wanted = [...new Set(ranks)].sort((a, b) => a - b);
  if (wanted.length === 0) return out;
  if (lo === hi) {
    for (const r of wanted) out.set(r, lo);
    return out;
  }
  if (src.count <= budget) {
    const all = new Float64Array(src.count);
    let i = 0;
    await src.scan((v) => {
      all[i++] = v;
    });
    all.sort();
    for (const r of wanted) out.set(r, all[r]!);
    return out;
  }
  const bucket = bucketer(lo, hi);
  const counts = new Float64Array(BUCKETS);
  const mins = new Float64Array(BUCKETS).fill(Infinity);
  const maxs = new Float64Array(BUCKETS).fill(-Infinity);
  await src.scan((v) => {
    const b = bucket(v);
    counts[b]! += 1;
    if (v < mins[b]!) mins[b] = v;
    if (v > maxs[b]!) maxs[b] = v;
  });
  // Which bucket holds each wanted rank, and its rank inside the bucket.
  const groups = new Map<number, { before: number; ranks: number[] }>();
  let before = 0;
  let w = 0;
  for (let b = 0; b < BUCKETS && w < wanted.length; b++) {
    const c = counts[b]!;
    while (w < wanted.length && wanted[w]! < before + c) {
      const g = groups.get(b) ?? { before, ranks: [] };
      g.ranks.push(wanted[w]! - before);
      groups.set(b, g);
      w++;
    }
    before += c;
  }
  for (const [b, g] of groups) {
    const inBucket: ValueSource = {
      count: counts[b]!,
      scan: (visit) =>
        src.scan((v) => {
          if (bucket(v) === b) visit(v);
        }),
    };
    const found = await selectRanks(inBucket, g.ranks, mins[b]!, maxs[b]!, budget);
    for (const r of g.ranks) out.set(r + g.before, found.get(r)!);
  }
  return out;
}

/** numpy's default ('linear', R type 7) quantile of n sorted values: the ranks it reads and the mix. */
export function quantileRanks(q: number, n: number): { lo: number; hi: number; frac: number } {
  const h = (n - 1) * q;
  const lo = Math.floor(h);
  return { lo, hi: Math.min(lo + 1, n - 1), frac: h - lo };
}

/** numpy's interpolation between neighbours (numpy `_lerp`: exact at both ends). */
export function lerp(a: number, b: number, t: number): number {
  const diff = b - a;
  return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
}

export interface Histogram {
  /** bins + 1 edges; the last bin includes its right edge. */
  edges: number[];
  counts: number[];
}

/**
 * Equal-width histogram over [min, max] with numpy.histogram's edges and bin assignment (its edges are
 * `linspace`, a value on an edge goes right, the maximum into the last bin), so counts match numpy's.
 */
export async function histogram(
  src: ValueSource,
  bins: number,
  min: number,
  max: number,
): Promise<Histogram> {
  let first = min;
  let last = max;
  if (first === last) {
    first -= 0.5;
    last += 0.5;
  }
  const step = (last - first) / bins;
  const edges = Array.from({ length: bins + 1 }, (_, i) => i * step + first);
  edges[bins] = last;
  const counts = new Array<number>(bins).fill(0);
  const norm = bins / (last - first);
  await src.scan((v) => {
    let i = Math.trunc((v - first) * norm);
    if (i === bins) i -= 1;
    if (v < edges[i]!) i -= 1;
    else if (i !== bins - 1 && v >= edges[i + 1]!) i += 1;
    counts[i]! += 1;
  });
  return { edges, counts };
}
