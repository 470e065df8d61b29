/**
 * The leaf-by-leaf range walk (btreeScan) visits exactly the entries BTree.forRange visits, in the
 * same order, for random trees (after inserts and deletes, so leaves are unevenly filled) and random
 * bounds: bounds inside, between, below and above the keys, equal bounds, and low above high. The
 * selection of percentiles gives what a sorted Float64Array gives, -0, NaN and duplicates included.
 */
import { describe, expect, it } from 'vitest';
import { BTree, cmp, random } from './btreeKit.js';
import { forRangeSpans } from '../../src/embedded/btreeScan.js';
import { percentileAt, selectPercentiles } from '../../src/embedded/percentile.js';

const key = (n: number): string => String(n).padStart(6, '0');

function spans(tree: InstanceType<typeof BTree<string, string>>, lo: string, hi: string): string[][] {
  const out: string[][] = [];
  forRangeSpans(tree, lo, hi, (keys, values, from, to) => {
    for (let i = from; i < to; i++) out.push([keys[i]!, values[i]!]);
  });
  return out;
}

describe('leaf-by-leaf range walk', () => {
  it('visits what BTree.forRange visits, in order, on random trees and bounds', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const rnd = random(seed);
      const tree = new BTree<string, string>(undefined, cmp, 4 + Math.floor(rnd() * 60));
      const n = [0, 1, 7, 300, 5000][seed - 1]!;
      for (let i = 0; i < n; i++) {
        const k = Math.floor(rnd() * 20_000) * 2; // even keys: odd bounds fall between entries
        tree.set(key(k), `v${k}`);
      }
      for (const k of tree.keysArray()) if (rnd() < 0.3) tree.delete(k);
      for (let q = 0; q < 300; q++) {
        let lo = key(Math.floor(rnd() * 40_400) - 200);
        let hi = key(Math.floor(rnd() * 40_400) - 200);
        if (q % 10 === 0) hi = lo;
        if (q % 7 === 0 && tree.size > 0) lo = tree.minKey()!;
        if (q % 11 === 0 && tree.size > 0) hi = tree.maxKey()!;
        const want: string[][] = [];
        tree.forRange(lo, hi, true, (k, v) => {
          want.push([k, v]);
        });
        expect(spans(tree, lo, hi)).toEqual(want);
      }
    }
  });

  it('visits nothing in an empty tree or for low above high', () => {
    const tree = new BTree<string, string>(undefined, cmp);
    expect(spans(tree, key(1), key(9))).toEqual([]);
    for (let i = 0; i < 100; i++) tree.set(key(i), `v${i}`);
    expect(spans(tree, key(50), key(40))).toEqual([]);
    expect(spans(tree, key(40), key(40))).toEqual([[key(40), 'v40']]);
  });
});

describe('percentiles by selection', () => {
  const sorted = (a: Float64Array): Float64Array => Float64Array.from(a).sort();
  const same = (x: number | null, y: number | null): boolean => Object.is(x, y);

  it('equal a sorted array at every rank, for random inputs with duplicates, zeros and NaN', () => {
    const rnd = random(42);
    const ps = [0, 0.01, 0.25, 0.5, 0.5, 0.95, 0.99, 1];
    for (let round = 0; round < 300; round++) {
      const n = round < 20 ? round : Math.floor(rnd() * 3000);
      const kinds = Math.floor(rnd() * 4);
      const a = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        const r = rnd();
        a[i] =
          kinds === 0
            ? Math.floor(rnd() * 5) // few distinct values
            : r < 0.05
              ? -0
              : r < 0.1
                ? 0
                : r < 0.12 && kinds === 3
                  ? Number.NaN
                  : Math.round((rnd() - 0.3) * 1e6) / (kinds === 2 ? 7 : 1);
      }
      const s = sorted(a);
      const want = ps.map((p) => percentileAt(s, p));
      const got = selectPercentiles(Float64Array.from(a), ps);
      got.forEach((g, i) => expect(same(g, want[i]!), `n=${n} p=${ps[i]}: ${g} vs ${want[i]}`).toBe(true));
    }
  });

  it('gives null for no values, and handles sorted, reversed and constant inputs', () => {
    expect(selectPercentiles(new Float64Array(0), [0.5, 0.95])).toEqual([null, null]);
    const up = Float64Array.from({ length: 100_001 }, (_, i) => i);
    expect(selectPercentiles(Float64Array.from(up), [0.5, 0.95])).toEqual([50_000, 95_000]);
    expect(selectPercentiles(Float64Array.from(up).reverse(), [0.95, 0.5])).toEqual([95_000, 50_000]);
    expect(selectPercentiles(new Float64Array(50_000).fill(7), [0.5, 1])).toEqual([7, 7]);
    expect(Object.is(selectPercentiles(Float64Array.from([0, -0, 0]), [0.3])[0], -0)).toBe(true);
    expect(Object.is(selectPercentiles(Float64Array.from([0, -0, 0]), [0.5])[0], 0)).toBe(true);
  });
});
