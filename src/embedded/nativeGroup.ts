/**
 * A native path for the shape reports use most: an optional $project of field paths and simple
 * expressions, then a $group with common accumulators, run straight over the stored documents
 * (mingo would first copy every document and interpret every expression per document).
 *
 * It covers a deliberately small language: field paths without arrays on the way, literals, $cond,
 * $eq, $ne, $type, $subtract and $trim (default characters) over null, strings, booleans, dates and
 * plain (int32 or double) numbers; accumulators $sum, $avg, $min, $max, $count, $percentile and $median. A stage outside it
 * is not compiled; a document whose values fall outside it (an array, a long, a decimal, a missing
 * operand of $eq...) makes the whole prefix run through mingo instead, so the answer never depends
 * on which path ran.
 */
import type { Document } from 'bson';
import { compareValues, isPlainObject } from './bsonOrder.js';
import { isInt32Number } from './numbers.js';
import { selectPercentiles } from './percentile.js';

/** Raised while evaluating: this input needs the general engine. */
class Fallback extends Error {}

/**
 * Evaluated against the input document, the values a fused $project computed for it, its top-level
 * fields the stages read (each read once per document, however many expressions use it), and the mask
 * of the fields slots that hold a date as its milliseconds rather than as a Date (a covered read's;
 * bit i for slot i).
 */
type Expr = (doc: Document, computed: unknown[], fields: unknown[], dates: number) => unknown;
/** How a field path resolves: on the document, or (after a $project) through the projection. */
type Scope = (path: string) => Expr | undefined;
type Simple = undefined | null | string | number | boolean | Date;

function simple(v: unknown): Simple {
  if (v === undefined || v === null) return v;
  const t = typeof v;
  if (t === 'string' || t === 'boolean') return v as Simple;
  if (t === 'number') {
    if (Number.isNaN(v)) throw new Fallback();
    return v as number;
  }
  if (v instanceof Date) return v;
  throw new Fallback();
}

/**
 * The top-level fields a compiled stage pair reads, each given a slot: a document's fields are read
 * into their slots once, before its expressions run (reading a field has no effect of its own).
 */
class Reads {
  readonly keys: string[] = [];
  /** A path into an embedded document was compiled: it reads the document itself. */
  nested = false;
  slot(key: string): number {
    const i = this.keys.indexOf(key);
    if (i >= 0) return i;
    this.keys.push(key);
    return this.keys.length - 1;
  }
}

/** The fields slot an expression reads as it is (a top-level field path), for the raw-date paths. */
const slotOfExpr = new WeakMap<Expr, number>();

function fieldPath(path: string, reads: Reads): Expr | undefined {
  const parts = path.split('.');
  if (parts.some((p) => p === '' || p.startsWith('$'))) return undefined;
  if (parts.length === 1) {
    const i = reads.slot(parts[0] as string);
    const bit = i < 31 ? 1 << i : 0;
    const e: Expr = (_doc, _c, f, dates) => ((dates & bit) !== 0 ? new Date(f[i] as number) : simple(f[i]));
    slotOfExpr.set(e, i);
    return e;
  }
  reads.nested = true;
  return (doc) => {
    let v: unknown = doc;
    for (const p of parts) {
      if (Array.isArray(v)) throw new Fallback();
      if (!isPlainObject(v)) return undefined;
      v = v[p];
    }
    return simple(v);
  };
}

function truthy(v: Simple): boolean {
  return !(v === undefined || v === null || v === false || v === 0);
}

function typeName(v: Simple): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return isInt32Number(v) ? 'int' : 'double';
  return 'date';
}

function subtract(a: Simple, b: Simple): Simple {
  if (a === undefined || a === null || b === undefined || b === null) return null;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (a instanceof Date && b instanceof Date) return a.getTime() - b.getTime();
  if (a instanceof Date && typeof b === 'number') return new Date(a.getTime() - b);
  throw new Fallback(); // an error in MongoDB: mingo reports it
}

/**
 * What $trim removes by default, as MongoDB documents it: the null character and whitespace (space,
 * \t, \n, \v, \f, \r, no-break space, Ogham space mark, and U+2000 to U+200A).
 */
const TRIMMED = new Set([0x00, 0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0xa0, 0x1680]);
for (let c = 0x2000; c <= 0x200a; c++) TRIMMED.add(c);

function trimDefault(s: string): string {
  let i = 0;
  let j = s.length;
  while (i < j && TRIMMED.has(s.charCodeAt(i))) i++;
  while (j > i && TRIMMED.has(s.charCodeAt(j - 1))) j--;
  return i === 0 && j === s.length ? s : s.slice(i, j);
}

function args(v: unknown, n: number, scope: Scope): Expr[] | undefined {
  if (!Array.isArray(v) || v.length !== n) return undefined;
  const out = v.map((x) => compileExpr(x, scope));
  return out.every((e) => e !== undefined) ? (out as Expr[]) : undefined;
}

/** An expression in the native language, or undefined when it is outside it. */
function compileExpr(e: unknown, scope: Scope): Expr | undefined {
  if (typeof e === 'string') {
    if (e.startsWith('$')) return e.startsWith('$$') ? undefined : scope(e.slice(1));
    return () => e;
  }
  if (e === null || typeof e === 'boolean' || (typeof e === 'number' && !Number.isNaN(e))) return () => e;
  if (!isPlainObject(e)) return undefined;
  const keys = Object.keys(e);
  if (keys.length !== 1) return undefined;
  const op = keys[0] as string;
  const arg = e[op] as unknown;
  switch (op) {
    case '$cond': {
      const parts = isPlainObject(arg)
        ? Object.keys(arg).length === 3
          ? [arg.if, arg.then, arg.else]
          : undefined
        : arg;
      const c = args(parts, 3, scope);
      if (!c) return undefined;
      const [test, then, otherwise] = c as [Expr, Expr, Expr];
      return (doc, c, f, d) =>
        truthy(test(doc, c, f, d) as Simple) ? then(doc, c, f, d) : otherwise(doc, c, f, d);
    }
    case '$eq':
    case '$ne': {
      const c = args(arg, 2, scope);
      if (!c) return undefined;
      const [x, y] = c as [Expr, Expr];
      const want = op === '$eq';
      // Against a string literal (the usual {$eq: ['$state', 'done']}), two strings are equal exactly
      // when identical (no collation reaches this path); anything else takes the general comparison.
      const lit = (arg as unknown[])[1];
      if (typeof lit === 'string' && !lit.startsWith('$'))
        return (doc, c, f, d) => {
          const a = x(doc, c, f, d);
          if (typeof a === 'string') return (a === lit) === want;
          if (a === undefined) throw new Fallback();
          return (compareValues(a, lit) === 0) === want;
        };
      return (doc, c, f, d) => {
        const a = x(doc, c, f, d);
        const b = y(doc, c, f, d);
        // A missing operand compares unlike null in expressions: left to mingo.
        if (a === undefined || b === undefined) throw new Fallback();
        return (compareValues(a, b) === 0) === want;
      };
    }
    case '$type': {
      const c = Array.isArray(arg) ? args(arg, 1, scope) : args([arg], 1, scope);
      if (!c) return undefined;
      const [x] = c as [Expr];
      const slot = slotOfExpr.get(x);
      if (slot !== undefined && slot < 31) {
        const bit = 1 << slot;
        return (doc, c, f, d) => ((d & bit) !== 0 ? 'date' : typeName(x(doc, c, f, d) as Simple));
      }
      return (doc, c, f, d) => typeName(x(doc, c, f, d) as Simple);
    }
    case '$trim': {
      // Only the default characters: {input} alone (chars, or an input that is not a string, go to mingo).
      if (!isPlainObject(arg) || Object.keys(arg).length !== 1 || !('input' in arg)) return undefined;
      const x = compileExpr(arg.input, scope);
      if (!x) return undefined;
      return (doc, c, f, d) => {
        const v = x(doc, c, f, d);
        if (v === undefined || v === null) return null;
        if (typeof v !== 'string') throw new Fallback();
        return trimDefault(v);
      };
    }
    case '$subtract': {
      const c = args(arg, 2, scope);
      if (!c) return undefined;
      const [x, y] = c as [Expr, Expr];
      const sx = slotOfExpr.get(x);
      const sy = slotOfExpr.get(y);
      if (sx !== undefined && sy !== undefined && sx < 31 && sy < 31) {
        // Two dates read as milliseconds: their difference is the difference of their getTime().
        const both = (1 << sx) | (1 << sy);
        return (doc, c, f, d) =>
          (d & both) === both
            ? (f[sx] as number) - (f[sy] as number)
            : subtract(x(doc, c, f, d) as Simple, y(doc, c, f, d) as Simple);
      }
      return (doc, c, f, d) => subtract(x(doc, c, f, d) as Simple, y(doc, c, f, d) as Simple);
    }
    default:
      return undefined;
  }
}

/**
 * A $project of inclusions and expressions, fused into the $group after it: the projected document is
 * never built. Every expression is still evaluated for every document (as the stage would), into
 * `computed`; the group's field paths resolve through the projection (scope).
 */
interface FusedProject {
  exprs: Expr[];
  scope: Scope;
}

function compileProject(spec: unknown, reads: Reads): FusedProject | undefined {
  if (!isPlainObject(spec)) return undefined;
  let keepId = true;
  const included = new Set<string>();
  const computed = new Map<string, number>();
  const exprs: Expr[] = [];
  for (const [k, v] of Object.entries(spec)) {
    if (k.includes('.') || k.startsWith('$')) return undefined;
    if (k === '_id' && (v === 0 || v === false)) {
      keepId = false;
      continue;
    }
    if (v === 1 || v === true) {
      included.add(k);
      continue;
    }
    if (typeof v !== 'string' && !isPlainObject(v)) return undefined;
    if (typeof v === 'string' && !v.startsWith('$')) return undefined;
    const e = compileExpr(v, (path) => fieldPath(path, reads));
    if (!e) return undefined;
    computed.set(k, exprs.length);
    exprs.push(e);
  }
  if (included.size + exprs.length === 0) return undefined;
  const missing: Expr = () => undefined;
  const scope: Scope = (path) => {
    const dot = path.indexOf('.');
    const top = dot < 0 ? path : path.slice(0, dot);
    const i = computed.get(top);
    // Computed values are never documents: a path into one is missing.
    if (i !== undefined) return dot < 0 ? (_doc, c) => c[i] : missing;
    if (included.has(top) || (top === '_id' && keepId)) return fieldPath(path, reads);
    return missing;
  };
  return { exprs, scope };
}

interface Acc {
  add(v: Simple): void;
  result(): unknown;
}

type AccFactory = { input: Expr; make: () => Acc };

function compileAccumulator(spec: unknown, scope: Scope): AccFactory | undefined {
  if (!isPlainObject(spec) || Object.keys(spec).length !== 1) return undefined;
  const op = Object.keys(spec)[0] as string;
  const arg = spec[op] as unknown;
  if (op === '$count') {
    if (!isPlainObject(arg) || Object.keys(arg).length !== 0) return undefined;
    return compileAccumulator({ $sum: 1 }, scope);
  }
  if (op === '$percentile' || op === '$median') {
    if (!isPlainObject(arg) || arg.method !== 'approximate') return undefined;
    const ps = op === '$median' ? [0.5] : arg.p;
    if (!Array.isArray(ps) || ps.length === 0) return undefined;
    if (!ps.every((p) => typeof p === 'number' && p >= 0 && p <= 1)) return undefined;
    const input = compileExpr(arg.input, scope);
    if (!input) return undefined;
    return {
      input,
      make: () => {
        // A growing Float64Array: numbers unboxed, and selection (not a sort) finds the ranks.
        let values = new Float64Array(64);
        let n = 0;
        return {
          add: (v) => {
            if (typeof v !== 'number') return;
            if (n === values.length) {
              const grown = new Float64Array(n * 2);
              grown.set(values);
              values = grown;
            }
            values[n++] = v;
          },
          result: () => {
            const r = selectPercentiles(values.subarray(0, n), ps as number[]);
            return op === '$median' ? r[0] : r;
          },
        };
      },
    };
  }
  if (Array.isArray(arg)) return undefined; // the operator's array form: left to mingo
  const input = compileExpr(arg, scope);
  if (!input) return undefined;
  switch (op) {
    case '$sum':
      return {
        input,
        make: () => {
          let sum = 0;
          return {
            add: (v) => {
              if (typeof v === 'number') sum += v;
            },
            result: () => sum,
          };
        },
      };
    case '$avg':
      return {
        input,
        make: () => {
          let sum = 0;
          let n = 0;
          return {
            add: (v) => {
              if (typeof v === 'number') {
                sum += v;
                n++;
              }
            },
            result: () => (n === 0 ? null : sum / n),
          };
        },
      };
    case '$min':
    case '$max': {
      const sign = op === '$max' ? 1 : -1;
      return {
        input,
        make: () => {
          let best: Simple = null;
          return {
            add: (v) => {
              if (v === undefined || v === null) return;
              if (best === null || sign * compareValues(v, best) > 0) best = v;
            },
            result: () => best,
          };
        },
      };
    }
    default:
      return undefined;
  }
}

function groupKey(v: Simple): string {
  if (v === undefined || v === null) return 'n';
  if (typeof v === 'string') return `s${v}`;
  if (typeof v === 'number') return `#${v === 0 ? 0 : v}`;
  if (typeof v === 'boolean') return `b${v}`;
  return `d${v.getTime()}`;
}

/**
 * Hands each input row to `row`: its document, and the values of the fields the stages read (the
 * Reads' keys, in order) in `fields`. A covered read passes an empty document: its stages read no
 * embedded path. It may pass a date as its milliseconds, with bit i of `dates` set for slot i: a
 * field path then makes a Date of it, except where $type or a $subtract of two such fields reads it
 * (their result is the same as from the Date, without building one per row).
 */
export type Feed = (row: (doc: Document, fields: unknown[], dates?: number) => void) => void;

function compileGroup(
  spec: unknown,
  project: FusedProject | undefined,
  reads: Reads,
): ((feed: Feed) => Document[]) | undefined {
  if (!isPlainObject(spec) || !('_id' in spec)) return undefined;
  const scope = project?.scope ?? ((path: string) => fieldPath(path, reads));
  const exprs = project?.exprs ?? [];
  const idSpec = spec._id as unknown;
  // A document key ({a: '$a', ...}) is not compiled; an operator expression ({$trim: ...}) may be.
  if (Array.isArray(idSpec) || (isPlainObject(idSpec) && !Object.keys(idSpec)[0]?.startsWith('$')))
    return undefined;
  const id = compileExpr(idSpec, scope);
  if (!id) return undefined;
  const accs: [string, AccFactory][] = [];
  for (const [k, v] of Object.entries(spec)) {
    if (k === '_id') continue;
    if (k.includes('.') || k.startsWith('$')) return undefined;
    const a = compileAccumulator(v, scope);
    if (!a) return undefined;
    accs.push([k, a]);
  }
  type Group = { id: Simple; accs: Acc[] };
  return (feed) => {
    const groups = new Map<string, Group>();
    // String keys (the usual group by type) are looked up as themselves, without building a key.
    const byString = new Map<string, Group>();
    const computed: unknown[] = new Array(exprs.length);
    feed((doc, fields, dates = 0) => {
      for (let i = 0; i < exprs.length; i++) computed[i] = exprs[i]!(doc, computed, fields, dates);
      const key = id(doc, computed, fields, dates) as Simple;
      let g = typeof key === 'string' ? byString.get(key) : undefined;
      if (!g) {
        const k = groupKey(key);
        g = groups.get(k);
        if (!g) {
          g = { id: key === undefined ? null : key, accs: accs.map(([, a]) => a.make()) };
          groups.set(k, g);
        }
        if (typeof key === 'string') byString.set(key, g);
      }
      for (let i = 0; i < accs.length; i++)
        g.accs[i]!.add(accs[i]![1].input(doc, computed, fields, dates) as Simple);
    });
    return [...groups.values()].map((g) => {
      const out: Document = { _id: g.id };
      accs.forEach(([k], i) => (out[k] = g.accs[i]!.result()));
      return out;
    });
  };
}

/** A leading [$project] $group compiled to the native language. */
export interface NativeGroup {
  /** How many stages it runs. */
  consumed: number;
  /** The top-level fields it reads, in the order a Feed passes their values. */
  fields: string[];
  /** It also reads paths into embedded documents, from the document itself. */
  nested: boolean;
  /** The groups; undefined when an input row falls outside the native language (mingo runs them). */
  run(feed: Feed): Document[] | undefined;
}

export function compileNativeGroup(stages: Document[]): NativeGroup | undefined {
  let i = 0;
  let project: FusedProject | undefined;
  const reads = new Reads();
  const first = stages[0];
  if (first && '$project' in first) {
    project = compileProject(first.$project, reads);
    if (!project) return undefined;
    i++;
  }
  const groupStage = stages[i];
  if (!groupStage || !('$group' in groupStage)) return undefined;
  const group = compileGroup(groupStage.$group, project, reads);
  if (!group) return undefined;
  return {
    consumed: i + 1,
    fields: reads.keys,
    nested: reads.nested,
    run: (feed) => {
      try {
        return group(feed);
      } catch (err) {
        if (err instanceof Fallback) return undefined;
        throw err;
      }
    },
  };
}

/**
 * Runs a leading [$project] $group natively when both are in the native language and every document
 * stays within it; returns the groups and how many stages it ran, or undefined (mingo runs them).
 */
export function runNativeGroup(
  docs: Document[],
  stages: Document[],
): { docs: Document[]; consumed: number } | undefined {
  const native = compileNativeGroup(stages);
  if (!native) return undefined;
  const keys = native.fields;
  const out = native.run((row) => {
    const fields: unknown[] = new Array(keys.length);
    for (const doc of docs) {
      for (let i = 0; i < keys.length; i++) fields[i] = doc[keys[i]!];
      row(doc, fields);
    }
  });
  return out ? { docs: out, consumed: native.consumed } : undefined;
}
