/**
 * MongoDB's comparison order across BSON types, plus the helpers that depend on it:
 * canonical keys for _id lookups, dotted-path value extraction for index keys and sorts.
 *
 * MinKey < null < numbers < string/symbol < object < array < binData < ObjectId < bool < date
 *   < timestamp < regex < MaxKey; numbers compare by value whatever their BSON type.
 */
import type { Document } from 'bson';

type Bsonish = { _bsontype?: string } & Record<string, unknown>;

/** A bound standing just before (high=false) or just after (high=true) every value of a type rank. */
export class TypeBound {
  constructor(
    readonly rank: number,
    readonly high: boolean,
  ) {}
}

export const Rank = {
  MinKey: 1,
  Null: 2,
  Number: 3,
  String: 4,
  Object: 5,
  Array: 6,
  BinData: 7,
  ObjectId: 8,
  Bool: 9,
  Date: 10,
  Timestamp: 11,
  Regex: 12,
  Code: 13,
  MaxKey: 14,
} as const;

function bsonType(v: unknown): string | undefined {
  if (v !== null && typeof v === 'object') return (v as Bsonish)._bsontype;
  return undefined;
}

export function typeRank(v: unknown): number {
  if (v === undefined || v === null) return Rank.Null;
  switch (typeof v) {
    case 'number':
    case 'bigint':
      return Rank.Number;
    case 'string':
      return Rank.String;
    case 'boolean':
      return Rank.Bool;
    case 'object':
      break;
    default:
      return Rank.Object;
  }
  if (Array.isArray(v)) return Rank.Array;
  if (v instanceof Date) return Rank.Date;
  if (v instanceof RegExp) return Rank.Regex;
  if (v instanceof Uint8Array) return Rank.BinData;
  switch (bsonType(v)) {
    case 'MinKey':
      return Rank.MinKey;
    case 'MaxKey':
      return Rank.MaxKey;
    case 'Long':
    case 'Double':
    case 'Int32':
    case 'Decimal128':
      return Rank.Number;
    case 'BSONSymbol':
      return Rank.String;
    case 'Binary':
      return Rank.BinData;
    case 'ObjectId':
      return Rank.ObjectId;
    case 'Timestamp':
      return Rank.Timestamp;
    case 'BSONRegExp':
      return Rank.Regex;
    case 'Code':
      return Rank.Code;
    default:
      return Rank.Object;
  }
}

/** Numeric value of any BSON number, as a JS number or (for exact 64-bit longs) a bigint. */
export function numericValue(v: unknown): number | bigint {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  const t = bsonType(v);
  if (t === 'Long') {
    const l = v as unknown as { toBigInt(): bigint; toNumber(): number };
    const n = l.toNumber();
    return Number.isSafeInteger(n) ? n : l.toBigInt();
  }
  if (t === 'Decimal128') return Number.parseFloat(String(v));
  if (t === 'Double' || t === 'Int32') return (v as unknown as { value: number }).value;
  return Number.NaN;
}

export function cmpNum(a: number | bigint, b: number | bigint): number {
  if (typeof a === 'number' && Number.isNaN(a)) return typeof b === 'number' && Number.isNaN(b) ? 0 : -1;
  if (typeof b === 'number' && Number.isNaN(b)) return 1;
  if (typeof a === 'bigint' && typeof b === 'number' && !Number.isInteger(b))
    return a < b ? -1 : a > b ? 1 : 0;
  return a < b ? -1 : a > b ? 1 : 0;
}

function cmpBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return a.length - b.length < 0 ? -1 : a.length > b.length ? 1 : 0;
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Compares two strings; a collation supplies its own, the default is binary order. */
export type StringCompare = (a: string, b: string) => number;

/** Total order of BSON values as MongoDB defines it; `strCmp` applies a collation to strings. */
export function compareValues(a: unknown, b: unknown, strCmp: StringCompare = cmpStr): number {
  // The common cases first: two values of the same primitive kind.
  const ta = typeof a;
  if (ta === typeof b) {
    if (ta === 'string') return strCmp(a as string, b as string);
    if (ta === 'number' && !Number.isNaN(a) && !Number.isNaN(b))
      return (a as number) < (b as number) ? -1 : (a as number) > (b as number) ? 1 : 0;
    if (a instanceof Date && b instanceof Date) return cmpNum(a.getTime(), b.getTime());
    if (ta === 'object' && bsonType(a) === 'ObjectId' && bsonType(b) === 'ObjectId') {
      return Buffer.compare((a as unknown as { id: Uint8Array }).id, (b as unknown as { id: Uint8Array }).id);
    }
  }
  if (b instanceof TypeBound || a instanceof TypeBound) return compareWithBound(a, b);
  const ra = typeRank(a);
  const rb = typeRank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case Rank.Null:
    case Rank.MinKey:
    case Rank.MaxKey:
      return 0;
    case Rank.Number:
      return cmpNum(numericValue(a), numericValue(b));
    case Rank.String:
      return strCmp(String(a), String(b));
    case Rank.Bool:
      return a === b ? 0 : a ? 1 : -1;
    case Rank.Date:
      return cmpNum((a as Date).getTime(), (b as Date).getTime());
    case Rank.ObjectId:
      return cmpBytes((a as { id: Uint8Array }).id, (b as { id: Uint8Array }).id);
    case Rank.Timestamp: {
      const ta = a as { t: number; i: number };
      const tb = b as { t: number; i: number };
      return ta.t !== tb.t ? cmpNum(ta.t, tb.t) : cmpNum(ta.i, tb.i);
    }
    case Rank.BinData: {
      const ba = binBytes(a);
      const bb = binBytes(b);
      if (ba.bytes.length !== bb.bytes.length) return ba.bytes.length < bb.bytes.length ? -1 : 1;
      if (ba.sub !== bb.sub) return ba.sub < bb.sub ? -1 : 1;
      return cmpBytes(ba.bytes, bb.bytes);
    }
    case Rank.Regex: {
      const [sa, fa] = regexParts(a);
      const [sb, fb] = regexParts(b);
      return cmpStr(sa, sb) || cmpStr(fa, fb);
    }
    case Rank.Array: {
      const xa = a as unknown[];
      const xb = b as unknown[];
      const n = Math.min(xa.length, xb.length);
      for (let i = 0; i < n; i++) {
        const c = compareValues(xa[i], xb[i], strCmp);
        if (c !== 0) return c;
      }
      return cmpNum(xa.length, xb.length);
    }
    case Rank.Object:
      return compareObjects(a as Document, b as Document, strCmp);
    default:
      return cmpStr(String(a), String(b));
  }
}

function compareWithBound(a: unknown, b: unknown): number {
  if (a instanceof TypeBound && b instanceof TypeBound) {
    if (a.rank !== b.rank) return a.rank < b.rank ? -1 : 1;
    return a.high === b.high ? 0 : a.high ? 1 : -1;
  }
  if (a instanceof TypeBound) return -compareWithBound(b, a);
  const bound = b as TypeBound;
  const r = typeRank(a);
  if (r !== bound.rank) return r < bound.rank ? -1 : 1;
  return bound.high ? -1 : 1;
}

function compareObjects(a: Document, b: Document, strCmp: StringCompare): number {
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  const n = Math.min(ka.length, kb.length);
  for (let i = 0; i < n; i++) {
    const fa = ka[i] as string;
    const fb = kb[i] as string;
    const va = a[fa];
    const vb = b[fb];
    const r = typeRank(va) - typeRank(vb);
    if (r !== 0) return r < 0 ? -1 : 1;
    const c = cmpStr(fa, fb) || compareValues(va, vb, strCmp);
    if (c !== 0) return c;
  }
  return cmpNum(ka.length, kb.length);
}

function binBytes(v: unknown): { sub: number; bytes: Uint8Array } {
  if (v instanceof Uint8Array) return { sub: 0, bytes: v };
  const b = v as { sub_type: number; buffer: Uint8Array; position: number };
  return { sub: b.sub_type, bytes: b.buffer.subarray(0, b.position) };
}

function regexParts(v: unknown): [string, string] {
  if (v instanceof RegExp) return [v.source, v.flags];
  const r = v as { pattern: string; options: string };
  return [r.pattern, r.options];
}

export function valuesEqual(a: unknown, b: unknown): boolean {
  return compareValues(a, b) === 0 && (typeRank(a) !== Rank.Object || canonicalKey(a) === canonicalKey(b));
}

/** A string that is equal for two values exactly when MongoDB considers them equal (used for _id maps). */
export function canonicalKey(v: unknown): string {
  const r = typeRank(v);
  switch (r) {
    case Rank.Null:
      return 'z';
    case Rank.MinKey:
      return 'm';
    case Rank.MaxKey:
      return 'M';
    case Rank.Number:
      return 'n' + String(numericValue(v));
    case Rank.String:
      return 's' + String(v);
    case Rank.Bool:
      return v ? 'T' : 'F';
    case Rank.Date:
      return 'd' + (v as Date).getTime();
    case Rank.ObjectId:
      return 'o' + (v as { toHexString(): string }).toHexString();
    case Rank.Timestamp:
      return 't' + (v as { t: number }).t + ':' + (v as { i: number }).i;
    case Rank.BinData: {
      const b = binBytes(v);
      return 'b' + b.sub + ':' + Buffer.from(b.bytes).toString('base64');
    }
    case Rank.Regex:
      return 'r' + regexParts(v).join('/');
    case Rank.Array:
      return '[' + (v as unknown[]).map(canonicalKey).join(',') + ']';
    case Rank.Object:
      return (
        '{' +
        Object.entries(v as Document)
          .map(([k, x]) => JSON.stringify(k) + ':' + canonicalKey(x))
          .join(',') +
        '}'
      );
    default:
      return 'c' + String(v);
  }
}

export function isPlainObject(v: unknown): v is Document {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** Copies plain objects and arrays (and dates); BSON value objects are immutable and shared. */
export function deepClone<T>(v: T): T {
  if (Array.isArray(v)) return v.map(deepClone) as T;
  if (v instanceof Date) return new Date(v.getTime()) as T;
  if (isPlainObject(v)) {
    const out: Document = {};
    for (const k of Object.keys(v)) out[k] = deepClone(v[k]);
    return out as T;
  }
  return v;
}

/**
 * Every value a dotted path reaches, expanding arrays as MongoDB's multikey indexes do.
 * A path that reaches nothing yields [undefined]; an empty array at the end yields [undefined].
 */
export function pathValues(doc: unknown, path: string): { values: unknown[]; multikey: boolean } {
  const parts = path.split('.');
  const out: unknown[] = [];
  let multikey = false;
  const walk = (v: unknown, i: number): void => {
    if (i === parts.length) {
      if (Array.isArray(v)) {
        multikey = true;
        if (v.length === 0) out.push(undefined);
        else for (const x of v) out.push(x);
      } else out.push(v);
      return;
    }
    const part = parts[i] as string;
    if (Array.isArray(v)) {
      multikey = true;
      const idx = /^\d+$/.test(part) ? Number(part) : -1;
      if (idx >= 0 && idx < v.length) {
        walk(v[idx], i + 1);
        return;
      }
      const objs = v.filter(isPlainObject);
      if (objs.length === 0) out.push(undefined);
      for (const x of objs) walk(x[part], i + 1);
      return;
    }
    if (isPlainObject(v)) walk(v[part], i + 1);
    else out.push(undefined);
  };
  walk(doc, 0);
  return { values: out, multikey };
}

/** The value a sort on `path` uses: the smallest (ascending) or largest (descending) reachable value. */
export function sortValue(doc: unknown, path: string, dir: number, strCmp: StringCompare = cmpStr): unknown {
  const { values } = pathValues(doc, path);
  let best: unknown = values[0];
  for (let i = 1; i < values.length; i++) {
    const c = compareValues(values[i], best, strCmp);
    if (dir > 0 ? c < 0 : c > 0) best = values[i];
  }
  return best;
}

export type SortSpec = Array<[string, number]>;

export function parseSortSpec(sort: unknown): SortSpec {
  if (sort === undefined || sort === null) return [];
  if (!isPlainObject(sort)) throw new TypeError('sort must be an object');
  return Object.entries(sort).map(([k, v]) => {
    const n = typeof v === 'number' ? v : Number(numericValue(v));
    if (isPlainObject(v) && '$meta' in v) throw new Error(`$meta sort on '${k}' is not supported`);
    if (n !== 1 && n !== -1) throw new Error(`Invalid sort direction for '${k}': must be 1 or -1`);
    return [k, n] as [string, number];
  });
}

export function compareBySort(
  spec: SortSpec,
  strCmp: StringCompare = cmpStr,
): (a: Document, b: Document) => number {
  return (a, b) => {
    for (const [path, dir] of spec) {
      const c = compareValues(sortValue(a, path, dir, strCmp), sortValue(b, path, dir, strCmp), strCmp);
      if (c !== 0) return c * dir;
    }
    return 0;
  };
}

/**
 * True when two values would serialize to the same BSON: same field order, same types, same
 * values. Decides whether an update modified a document (MongoDB's nModified).
 */
export function sameBson(a: unknown, b: unknown): boolean {
  if (a === b) return typeof a !== 'number' || Object.is(a, b);
  const t = typeof a;
  if (t !== typeof b) return false;
  if (t === 'number') return Object.is(a, b);
  if (t !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameBson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  if (a instanceof Date) return b instanceof Date && Object.is(a.getTime(), b.getTime());
  if (isPlainObject(a)) {
    if (!isPlainObject(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    for (let i = 0; i < ka.length; i++) {
      const k = ka[i] as string;
      if (k !== kb[i] || !sameBson(a[k], b[k])) return false;
    }
    return true;
  }
  const ba = bsonType(a);
  if (ba !== bsonType(b) || Object.getPrototypeOf(a) !== Object.getPrototypeOf(b)) return false;
  if (ba === 'Decimal128' || ba === 'Double')
    return String(a) === String(b) && Object.is(numericValue(a), numericValue(b));
  return canonicalKey(a) === canonicalKey(b);
}
