/**
 * $percentile and $median (accumulators and expressions), as MongoDB 7.0 documents them: non-numeric
 * inputs are ignored; each `p` gives a value of the input set; no numeric input gives null. mingo's own
 * versions sort the numbers as strings (so 1000 sorts before 200): a silently wrong answer.
 *
 * MongoDB 7.0's only method, 'approximate', is a t-digest whose answers are values of the input; this
 * server computes the discrete percentile exactly (the ceil(p·n)-th smallest value), which the
 * approximation converges to and which MongoDB returns for inputs of the sizes a t-digest keeps whole.
 */
import { Context, evalExpr } from 'mingo/core';
import * as accumulatorOperators from 'mingo/operators/accumulator';
import * as expressionOperators from 'mingo/operators/expression';
import * as pipelineOperators from 'mingo/operators/pipeline';
import * as projectionOperators from 'mingo/operators/projection';
import * as queryOperators from 'mingo/operators/query';
import * as windowOperators from 'mingo/operators/window';
import { CommandError } from './errors.js';

type Options = Parameters<typeof evalExpr>[2];

function numbers(values: unknown[]): number[] {
  return values.filter((v): v is number => typeof v === 'number' && !Number.isNaN(v)).sort((a, b) => a - b);
}

function checkSpec(expr: unknown, name: string): { input: unknown; p?: unknown; method?: unknown } {
  if (expr === null || typeof expr !== 'object' || Array.isArray(expr) || !('input' in expr)) {
    throw new CommandError(
      'BadValue',
      `${name} requires an object with 'input'${name === '$percentile' ? " and 'p'" : ''}`,
    );
  }
  const spec = expr as { input: unknown; p?: unknown; method?: unknown };
  if (spec.method !== 'approximate') {
    throw new CommandError(
      'BadValue',
      `${name}: method must be 'approximate' (the only method of MongoDB 7.0); got ${JSON.stringify(spec.method)}`,
    );
  }
  return spec;
}

function ps(p: unknown): number[] {
  if (!Array.isArray(p) || p.length === 0 || !p.every((x) => typeof x === 'number' && x >= 0 && x <= 1)) {
    throw new CommandError(
      'BadValue',
      "$percentile 'p' must be a non-empty array of numbers between 0.0 and 1.0",
    );
  }
  return p as number[];
}

/** The discrete p-th percentile of ascending numbers (null for none). */
export function percentileAt(sorted: ArrayLike<number>, p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

/**
 * The discrete percentiles of `values` (reordered in place), each equal to percentileAt of the same
 * values sorted as a Float64Array sorts (-0 before 0, NaN last), found by selection instead of a full
 * sort: a million run times need two ranks, not a million places.
 */
export function selectPercentiles(values: Float64Array, ps: readonly number[]): (number | null)[] {
  const n = values.length;
  if (n === 0) return ps.map(() => null);
  // NaNs go last in the sorted order: keep the numbers in front, count the rest.
  let m = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v === v) values[m++] = v;
  }
  const ranks = ps.map((p) => Math.max(0, Math.ceil(p * n) - 1));
  const order = ranks.map((_, i) => i).sort((a, b) => ranks[a]! - ranks[b]!);
  const out = new Array<number | null>(ps.length);
  let lo = 0;
  for (const j of order) {
    const k = ranks[j]!;
    if (k >= m) {
      out[j] = Number.NaN;
      continue;
    }
    selectRank(values, k, lo, m - 1);
    lo = k;
    const v = values[k]!;
    out[j] = v === 0 ? signedZeroAt(values, m, k) : v;
  }
  return out;
}

/** Which zero the sorted order holds at rank k, -0 sorting before 0. */
function signedZeroAt(values: Float64Array, m: number, k: number): number {
  let below = 0;
  for (let i = 0; i < m; i++) {
    const v = values[i]!;
    if (v < 0 || (v === 0 && 1 / v < 0)) below++;
  }
  return k < below ? -0 : 0;
}

/**
 * Moves the value of rank k (among a[lo..hi]) to a[k], smaller or equal ones before it and greater or
 * equal ones after it (quickselect, median-of-three pivot, Hoare partition). A range that shrinks too
 * slowly is sorted instead, so the worst case stays n log n.
 */
function selectRank(a: Float64Array, k: number, lo: number, hi: number): void {
  let budget = 2 * Math.ceil(Math.log2(hi - lo + 2)) + 8;
  while (hi > lo) {
    if (--budget < 0) {
      a.subarray(lo, hi + 1).sort();
      return;
    }
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < a[lo]!) swap(a, lo, mid);
    if (a[hi]! < a[lo]!) swap(a, lo, hi);
    if (a[hi]! < a[mid]!) swap(a, mid, hi);
    const pivot = a[mid]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i]! < pivot) i++;
      while (a[j]! > pivot) j--;
      if (i <= j) {
        swap(a, i, j);
        i++;
        j--;
      }
    }
    // a[lo..j] <= pivot, a[i..hi] >= pivot, and whatever lies between equals the pivot.
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else return;
  }
}

function swap(a: Float64Array, i: number, j: number): void {
  const t = a[i]!;
  a[i] = a[j]!;
  a[j] = t;
}

function inputs(collection: unknown[], input: unknown, options: Options): unknown[] {
  return collection.map((doc) => evalExpr(doc, input, options) as unknown);
}

/**
 * mingo's operators with these in place of its own. (mingo merges contexts with the first definition
 * winning, so the replacements are built into one full context rather than layered on top.)
 */
export const AGGREGATION_CONTEXT = Context.init({
  pipeline: pipelineOperators,
  projection: projectionOperators,
  query: queryOperators,
  window: windowOperators,
  accumulator: {
    ...accumulatorOperators,
    $percentile: (collection: unknown[], expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$percentile');
      const sorted = numbers(inputs(collection, spec.input, options));
      return ps(spec.p).map((p) => percentileAt(sorted, p));
    },
    $median: (collection: unknown[], expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$median');
      return percentileAt(numbers(inputs(collection, spec.input, options)), 0.5);
    },
  },
  expression: {
    ...expressionOperators,
    $percentile: (obj: unknown, expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$percentile');
      const v = evalExpr(obj, spec.input, options) as unknown;
      const sorted = numbers(Array.isArray(v) ? v : [v]);
      return ps(spec.p).map((p) => percentileAt(sorted, p));
    },
    $median: (obj: unknown, expr: unknown, options: Options) => {
      const spec = checkSpec(expr, '$median');
      const v = evalExpr(obj, spec.input, options) as unknown;
      return percentileAt(numbers(Array.isArray(v) ? v : [v]), 0.5);
    },
  },
} as never);
