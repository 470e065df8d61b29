/**
 * How the server keeps each number's BSON type. Stored documents hold:
 *   int32   → a JS number that is an integer in int32 range
 *   double  → a JS number otherwise, or a bson Double when its value is integral (1.0 would
 *             otherwise serialize back as an int32)
 *   int64   → a bson Long
 *   decimal → a bson Decimal128
 * Comparison (bsonOrder) already orders all of them by value; this module converts freshly
 * deserialized BSON into that shape and does arithmetic that keeps MongoDB's type rules.
 */
import { BSON, Decimal128, Double, Long, type Document } from 'bson';
import { CommandError } from './errors.js';

type Tagged = { _bsontype?: string };

/** Deserialization that keeps Int32/Double/Long wrappers, to be passed through normalizeNumbers. */
export const RAW_NUMBER_OPTIONS: BSON.DeserializeOptions = {
  promoteLongs: false,
  promoteValues: false,
  promoteBuffers: false,
};

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

export function isInt32Number(v: number): boolean {
  return Number.isInteger(v) && v >= INT32_MIN && v <= INT32_MAX && !Object.is(v, -0);
}

/** The stored form of a double. */
export function double(v: number): number | Double {
  return isInt32Number(v) ? new Double(v) : v;
}

function normalizeValue(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = normalizeValue(v[i]);
    return v;
  }
  const t = (v as Tagged)._bsontype;
  if (t === undefined) {
    normalizeNumbers(v as Document);
    return v;
  }
  if (t === 'Int32') return (v as { value: number }).value;
  if (t === 'Double') return double((v as { value: number }).value);
  return v;
}

/** Turns Int32 wrappers into numbers and non-integral Double wrappers into numbers, in place. */
export function normalizeNumbers<T extends Document>(doc: T): T {
  for (const k in doc) {
    const v = doc[k] as unknown;
    if (v !== null && typeof v === 'object') (doc as Document)[k] = normalizeValue(v);
  }
  return doc;
}

export function deserializeKeepingTypes(bytes: Uint8Array): Document {
  return normalizeNumbers(BSON.deserialize(bytes, RAW_NUMBER_OPTIONS));
}

/** Plain JS numbers for the stages run by mingo, which knows nothing of bson's wrappers (decimals stay). */
export function toPlainNumbers<T>(v: T): T {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(toPlainNumbers) as T;
  const t = (v as Tagged)._bsontype;
  if (t === 'Double' || t === 'Int32') return (v as unknown as { value: number }).value as T;
  if (t === 'Long') return (v as unknown as Long).toNumber() as T;
  if (t !== undefined || v instanceof Date || v instanceof RegExp || v instanceof Uint8Array) return v;
  const out: Document = {};
  for (const k of Object.keys(v)) out[k] = toPlainNumbers((v as Document)[k]);
  return out as T;
}

export type NumKind = 'int' | 'long' | 'double' | 'decimal';

export function numKind(v: unknown): NumKind | undefined {
  if (typeof v === 'number') return isInt32Number(v) ? 'int' : 'double';
  if (typeof v === 'bigint') return 'long';
  if (v === null || typeof v !== 'object') return undefined;
  switch ((v as Tagged)._bsontype) {
    case 'Int32':
      return 'int';
    case 'Double':
      return 'double';
    case 'Long':
      return 'long';
    case 'Decimal128':
      return 'decimal';
    default:
      return undefined;
  }
}

const RANK: Record<NumKind, number> = { int: 0, long: 1, double: 2, decimal: 3 };

function asBig(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  if ((v as Tagged)._bsontype === 'Long') return (v as Long).toBigInt();
  return BigInt(Number(v));
}

function asNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  const t = (v as Tagged)._bsontype;
  if (t === 'Long') return (v as Long).toNumber();
  if (t === 'Decimal128') return Number.parseFloat(String(v));
  return (v as { value: number }).value;
}

const LONG_MIN = -(2n ** 63n);
const LONG_MAX = 2n ** 63n - 1n;

/**
 * a+b or a*b with MongoDB's result types: the wider of the two (int < long < double < decimal);
 * an int32 result that overflows becomes a long; a long that overflows is an error.
 */
export function arithmetic(op: '$inc' | '$mul', a: unknown, b: unknown, path: string): unknown {
  const ka = numKind(a) ?? 'int';
  const kb = numKind(b) as NumKind;
  const kind = RANK[ka] >= RANK[kb] ? ka : kb;
  if (kind === 'decimal') {
    const x = Number.parseFloat(String(a ?? 0));
    const y = Number.parseFloat(String(b));
    // Decimal arithmetic through doubles: exact for the integers and short fractions jobs use.
    return Decimal128.fromString(String(op === '$inc' ? x + y : x * y));
  }
  if (kind === 'double')
    return double(op === '$inc' ? asNumber(a ?? 0) + asNumber(b) : asNumber(a ?? 0) * asNumber(b));
  const r = op === '$inc' ? asBig(a ?? 0) + asBig(b) : asBig(a ?? 0) * asBig(b);
  if (kind === 'int' && r >= BigInt(INT32_MIN) && r <= BigInt(INT32_MAX)) return Number(r);
  if (r < LONG_MIN || r > LONG_MAX) {
    throw new CommandError(
      'BadValue',
      `Failed to apply ${op} operations to current value (${String(a)}) for document field '${path}': integer overflow`,
    );
  }
  return Long.fromBigInt(r);
}
