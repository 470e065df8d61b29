/**
 * data_aggregation's metrics, with MongoDB's `$group` semantics where they exist: sum and mean take
 * numbers only (others are ignored; a sum of none is 0, a mean of none null); min and max ignore null and
 * missing and compare across types in MongoDB's order (numbers < strings < objects < arrays < booleans);
 * count("*") counts rows, count(field) rows where the field holds a value; distinct_count counts
 * distinct values other than null, equal when their JSON text is equal.
 *
 * A group's state is a small array that also travels through spill runs as JSON; sums are compensated
 * (Neumaier), so the order in which rows and runs are added changes the result by at most an ulp or so.
 */
import { compare } from 'mingo/util';
import { DistinctSet } from './distinctSet.js';

export type MetricOp = 'count' | 'sum' | 'mean' | 'min' | 'max' | 'distinct_count';

export interface MetricSpec {
  name: string;
  op: MetricOp;
  /** A field (dotted for nested), or "*" for count of rows. */
  field: string;
}

/** A field's value in a record; a dotted name walks nested objects. */
export function getter(field: string): (rec: Record<string, unknown>) => unknown {
  if (!field.includes('.')) return (rec) => rec[field];
  const parts = field.split('.');
  return (rec) => {
    let cur: unknown = rec;
    for (const p of parts) {
      if (cur === null || typeof cur !== 'object') return undefined;
      cur = (cur as Record<string, unknown>)[p];
    }
    return cur;
  };
}

/** A compensated sum: [sum, compensation]. */
export type Sum = [number, number];

export function addTo(s: Sum, x: number): void {
  const t = s[0] + x;
  s[1] += Math.abs(s[0]) >= Math.abs(x) ? s[0] - t + x : x - t + s[0];
  s[0] = t;
}

function mergeSum(s: Sum, o: Sum): void {
  addTo(s, o[0]);
  s[1] += o[1];
}

const lower = (a: unknown, b: unknown): boolean =>
  typeof a === 'number' && typeof b === 'number' ? a < b : compare(a, b) < 0;

/** One metric's state: count → number; sum → Sum; mean → [sum, comp, n]; min/max → value; distinct → DistinctSet (memory) or count (merge). */
export type State = number | Sum | [number, number, number] | unknown;

const COUNT = 0;
const SUM = 1;
const MEAN = 2;
const MIN = 3;
const MAX = 4;
const DISTINCT = 5;
const OP_CODES: Record<MetricOp, number> = {
  count: COUNT,
  sum: SUM,
  mean: MEAN,
  min: MIN,
  max: MAX,
  distinct_count: DISTINCT,
};

export class Metrics {
  /** Each metric's operation as a small integer (a switch on them is a jump table). */
  private readonly ops: Uint8Array;
  readonly get: ((rec: Record<string, unknown>) => unknown)[];
  /** Indexes of the distinct_count metrics (their values travel as lines of their own). */
  readonly distinct: number[];

  constructor(readonly specs: readonly MetricSpec[]) {
    this.get = specs.map((m) => (m.field === '*' ? () => 1 : getter(m.field)));
    this.distinct = specs.flatMap((m, i) => (m.op === 'distinct_count' ? [i] : []));
    this.ops = Uint8Array.from(specs, (m) => OP_CODES[m.op]);
  }

  fresh(inMemory: boolean): State[] {
    return this.specs.map((m) => {
      switch (m.op) {
        case 'count':
          return 0;
        case 'sum':
          return [0, 0];
        case 'mean':
          return [0, 0, 0];
        case 'distinct_count':
          return inMemory ? new DistinctSet() : 0;
        default:
          return undefined;
      }
    });
  }

  private readonly scratch: unknown[] = [];

  /** Adds a row; returns how many new distinct values it brought (memory accounting). */
  add(st: State[], rec: Record<string, unknown>): number {
    const vals = this.scratch;
    for (let i = 0; i < this.specs.length; i++) vals[i] = this.get[i]!(rec);
    return this.addValues(st, vals);
  }

  /** Adds a row given as its metrics' field values (`vals[i]` for metric i; 1 for count "*"). */
  addValues(st: State[], vals: readonly unknown[]): number {
    let added = 0;
    for (let i = 0; i < this.specs.length; i++) added += this.addValue(st, i, vals[i]);
    return added;
  }

  /** Adds metric i's value of a row; returns 1 if it was a new distinct value, else 0. */
  addValue(st: State[], i: number, v: unknown): number {
    if (typeof v === 'number') return this.addNumber(st, i, v);
    if (v === null || v === undefined) return 0;
    switch (this.ops[i]) {
      case COUNT:
        (st[i] as number)++;
        return 0;
      case MIN:
        if (st[i] === undefined || lower(v, st[i])) st[i] = v;
        return 0;
      case MAX:
        if (st[i] === undefined || lower(st[i], v)) st[i] = v;
        return 0;
      case DISTINCT:
        return (st[i] as DistinctSet).add(v) ? 1 : 0;
      default:
        return 0;
    }
  }

  /** `addValue` for a number: the path a file's numeric fields take, with no boxing of the number. */
  addNumber(st: State[], i: number, x: number): number {
    switch (this.ops[i]) {
      case COUNT:
        (st[i] as number)++;
        return 0;
      case SUM:
        addTo(st[i] as Sum, x);
        return 0;
      case MEAN: {
        const m = st[i] as [number, number, number];
        addTo(m as unknown as Sum, x);
        m[2] += 1;
        return 0;
      }
      case MIN: {
        const cur = st[i];
        if (cur === undefined || (typeof cur === 'number' ? x < cur : lower(x, cur))) st[i] = x;
        return 0;
      }
      case MAX: {
        const cur = st[i];
        if (cur === undefined || (typeof cur === 'number' ? cur < x : lower(cur, x))) st[i] = x;
        return 0;
      }
      default:
        return (st[i] as DistinctSet).add(x) ? 1 : 0;
    }
  }

  /** The state as it goes into a run (distinct values go as lines of their own: 0 here). */
  serialize(st: State[]): unknown[] {
    return st.map((s, i) => (this.specs[i]!.op === 'distinct_count' ? 0 : (s ?? null)));
  }

  /** Adds a run's serialized state into `st`. */
  combine(st: State[], other: readonly unknown[]): void {
    for (let i = 0; i < this.specs.length; i++) {
      const o = other[i];
      switch (this.specs[i]!.op) {
        case 'count':
          (st[i] as number) += o as number;
          break;
        case 'sum':
          mergeSum(st[i] as Sum, o as Sum);
          break;
        case 'mean': {
          const m = st[i] as [number, number, number];
          const om = o as [number, number, number];
          mergeSum(m as unknown as Sum, [om[0], om[1]]);
          m[2] += om[2];
          break;
        }
        case 'min':
          if (o !== null && (st[i] === undefined || lower(o, st[i]))) st[i] = o;
          break;
        case 'max':
          if (o !== null && (st[i] === undefined || lower(st[i], o))) st[i] = o;
          break;
        default:
          break;
      }
    }
  }

  /** The metrics' values; `distinctCounts[i]` for distinct_count metrics merged from runs. */
  finish(st: State[], distinctCounts?: readonly number[]): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < this.specs.length; i++) {
      const m = this.specs[i]!;
      const s = st[i];
      switch (m.op) {
        case 'count':
          out[m.name] = s;
          break;
        case 'sum':
          out[m.name] = (s as Sum)[0] + (s as Sum)[1];
          break;
        case 'mean': {
          const a = s as [number, number, number];
          out[m.name] = a[2] === 0 ? null : (a[0] + a[1]) / a[2];
          break;
        }
        case 'distinct_count':
          out[m.name] = s instanceof DistinctSet ? s.size : (distinctCounts?.[i] ?? 0);
          break;
        default:
          out[m.name] = s ?? null;
      }
    }
    return out;
  }
}
