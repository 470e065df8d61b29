/**
 * Index keys as single strings whose plain string order is the index's key order (as MongoDB's
 * KeyString): a B+tree comparison is then one native string compare instead of a walk over an array
 * of values, which matters because each comparison of a large tree is a cache miss per object touched.
 *
 * Only the common types are encoded: null, booleans, JS numbers, strings, dates and ObjectIds. A key
 * holding anything else stays an array, and the tree compares a string with an array by decoding the
 * string, so both forms share one exact order (compareKeys). Equal values always encode identically
 * (-0 becomes 0), so string equality is key equality.
 *
 * Layout, per element: a type tag (0x10 + the type's rank) then a payload whose characters all lie in
 * [1, 0xFFFE]; a descending position stores 0xFFFF - c for every character. That leaves 0x0000 and
 * 0xFFFF for the bounds: KEY_MIN and KEY_MAX as a whole element, and a type's lower and upper bound
 * (TypeBound) as its tag followed by 0x0000 or 0xFFFF. Numbers and dates are their IEEE-754 bits made
 * order-preserving, in five 13-bit characters; strings end with 0x0001 and are encoded only when every
 * code unit lies in [2, 0xFFFD].
 */
import { ObjectId } from 'bson';
import { Rank, TypeBound } from './bsonOrder.js';

/** The bound sentinels, as in indexes.ts (there: below/above every value at one key position). */
export interface KeySentinels {
  min: symbol;
  max: symbol;
}

const TAG = 0x10;
const LOW = 0x0000;
const HIGH = 0xffff;
const STRING_END = 0x0001;
// The range is the point: 0x0000, 0x0001, 0xFFFE and 0xFFFF are the encoding's own markers.
// eslint-disable-next-line no-control-regex
const PLAIN_STRING = /^[\u0002-\ufffd]*$/;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
// Which word of the double holds the sign (little-endian hosts: the second).
const HI = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 1 : 0;
const LO = 1 - HI;

/** A double's order-preserving encoding: five characters of 13 bits (plus one). */
function double(n: number): string {
  // NaN sorts below every number, -Infinity included, as MongoDB orders it.
  if (Number.isNaN(n)) return '\u0001\u0001\u0001\u0001\u0001';
  f64[0] = n === 0 ? 0 : n;
  let hi = u32[HI] as number;
  let lo = u32[LO] as number;
  if (hi & 0x80000000) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
  } else hi = (hi | 0x80000000) >>> 0;
  return String.fromCharCode(
    (hi >>> 19) + 1,
    ((hi >>> 6) & 0x1fff) + 1,
    (((hi & 0x3f) << 7) | (lo >>> 25)) + 1,
    ((lo >>> 12) & 0x1fff) + 1,
    (lo & 0xfff) + 1,
  );
}

function readDouble(c: number[], i: number): number {
  return doubleFrom(c[i]! - 1, c[i + 1]! - 1, c[i + 2]! - 1, c[i + 3]! - 1, c[i + 4]! - 1);
}

/** The double whose five key characters (less one) are a, b, d, e, f. */
function doubleFrom(a: number, b: number, d: number, e: number, f: number): number {
  if (a === 0 && b === 0 && d === 0 && e === 0 && f === 0) return Number.NaN;
  let hi = ((a << 19) | (b << 6) | (d >>> 7)) >>> 0;
  let lo = (((d & 0x7f) << 25) | (e << 12) | f) >>> 0;
  if (hi & 0x80000000) hi = (hi & 0x7fffffff) >>> 0;
  else {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
  }
  u32[HI] = hi;
  u32[LO] = lo;
  return f64[0] as number;
}

/** readDouble straight from a key string (descending: inverted characters). */
function readDoubleAt(str: string, i: number, desc: boolean): number {
  if (desc)
    return doubleFrom(
      HIGH - 1 - str.charCodeAt(i),
      HIGH - 1 - str.charCodeAt(i + 1),
      HIGH - 1 - str.charCodeAt(i + 2),
      HIGH - 1 - str.charCodeAt(i + 3),
      HIGH - 1 - str.charCodeAt(i + 4),
    );
  return doubleFrom(
    str.charCodeAt(i) - 1,
    str.charCodeAt(i + 1) - 1,
    str.charCodeAt(i + 2) - 1,
    str.charCodeAt(i + 3) - 1,
    str.charCodeAt(i + 4) - 1,
  );
}

const tag = (rank: number): string => String.fromCharCode(TAG + rank);
const T_STRING = tag(Rank.String);
const T_NUMBER = tag(Rank.Number);
const T_DATE = tag(Rank.Date);
const NULL_VALUE = tag(Rank.Null) + '\u0002';
const FALSE_VALUE = tag(Rank.Bool) + '\u0002';
const TRUE_VALUE = tag(Rank.Bool) + '\u0003';
const STRING_TAIL = String.fromCharCode(STRING_END);
const MIN_ELEMENT = String.fromCharCode(LOW);
const MAX_ELEMENT = String.fromCharCode(HIGH);

/** One value's encoding (ascending); undefined when its type is not encoded. */
function valueString(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
      return PLAIN_STRING.test(v) ? T_STRING + v + STRING_TAIL : undefined;
    case 'number':
      return T_NUMBER + double(v);
    case 'boolean':
      return v ? TRUE_VALUE : FALSE_VALUE;
    case 'object':
      break;
    default:
      return undefined;
  }
  if (v === null) return NULL_VALUE;
  if (v instanceof Date) {
    const t = v.getTime();
    return Number.isNaN(t) ? undefined : T_DATE + double(t);
  }
  if (v instanceof TypeBound) return String.fromCharCode(TAG + v.rank, v.high ? HIGH : LOW);
  if ((v as { _bsontype?: string })._bsontype === 'ObjectId') {
    const id = (v as ObjectId).id;
    const codes = [TAG + Rank.ObjectId];
    for (let i = 0; i < 12; i += 3) {
      const x = ((id[i] as number) << 16) | ((id[i + 1] as number) << 8) | (id[i + 2] as number);
      codes.push((x >>> 12) + 1, (x & 0xfff) + 1);
    }
    return String.fromCharCode(...codes);
  }
  return undefined;
}

/**
 * One value encoded as an ascending key element, undefined when its type is not encoded: a document's
 * _id, encoded once for the trailing position of every index entry it gets.
 */
export function encodeValue(v: unknown): string | undefined {
  return valueString(v);
}

/**
 * One value encoded as a key element in the given direction, undefined when its type is not encoded:
 * what encodeKey gives for that position, for a caller that builds a key straight from a document.
 */
export function encodeElement(v: unknown, desc: boolean): string | undefined {
  const e = valueString(v);
  return e === undefined || !desc ? e : inverted(e);
}

function inverted(s: string): string {
  const codes = new Array<number>(s.length);
  for (let i = 0; i < s.length; i++) codes[i] = HIGH - s.charCodeAt(i);
  let out = '';
  // fromCharCode takes its arguments on the stack: long values go in slices.
  for (let i = 0; i < codes.length; i += 4096) out += String.fromCharCode(...codes.slice(i, i + 4096));
  return out;
}

/**
 * A key (values, sentinels or type bounds) as a string, `dirs` giving each position's direction;
 * undefined when a value's type is not encoded. `tail`, an ascending element already encoded (see
 * encodeValue), is appended as the key's last position.
 */
export function encodeKey(
  key: unknown[],
  dirs: number[],
  s: KeySentinels,
  tail?: string,
): string | undefined {
  const parts = new Array<string>(key.length + (tail === undefined ? 0 : 1));
  if (tail !== undefined) parts[key.length] = tail;
  for (let i = 0; i < key.length; i++) {
    const v = key[i];
    if (v === s.min) parts[i] = MIN_ELEMENT;
    else if (v === s.max) parts[i] = MAX_ELEMENT;
    else {
      const e = valueString(v);
      if (e === undefined) return undefined;
      parts[i] = (dirs[i] ?? 1) < 0 ? inverted(e) : e;
    }
  }
  // join() builds one flat string: a concatenation would leave a rope to flatten at each compare.
  return parts.join('');
}

/** The values (and sentinels, type bounds) of an encoded key. */
export function decodeKey(str: string, dirs: number[], s: KeySentinels): unknown[] {
  const key: unknown[] = [];
  let i = 0;
  for (let pos = 0; i < str.length; pos++) {
    const first = str.charCodeAt(i);
    if (first === LOW || first === HIGH) {
      key.push(first === LOW ? s.min : s.max);
      i++;
      continue;
    }
    const desc = (dirs[pos] ?? 1) < 0;
    const at = (k: number): number => (desc ? HIGH - str.charCodeAt(k) : str.charCodeAt(k));
    const rank = at(i) - TAG;
    const next = at(i + 1);
    if (next === LOW || next === HIGH) {
      key.push(new TypeBound(rank, next === HIGH));
      i += 2;
      continue;
    }
    i++;
    switch (rank) {
      case Rank.Null:
        key.push(null);
        i++;
        break;
      case Rank.Bool:
        key.push(at(i) === 3);
        i++;
        break;
      case Rank.Number:
      case Rank.Date: {
        const n = readDouble([at(i), at(i + 1), at(i + 2), at(i + 3), at(i + 4)], 0);
        key.push(rank === Rank.Date ? new Date(n) : n);
        i += 5;
        break;
      }
      case Rank.String: {
        let v = '';
        for (; at(i) !== STRING_END; i++) v += String.fromCharCode(at(i));
        key.push(v);
        i++;
        break;
      }
      case Rank.ObjectId: {
        const bytes = new Uint8Array(12);
        for (let b = 0; b < 12; b += 3, i += 2) {
          const x = ((at(i) - 1) << 12) | (at(i + 1) - 1);
          bytes[b] = x >>> 16;
          bytes[b + 1] = (x >>> 8) & 0xff;
          bytes[b + 2] = x & 0xff;
        }
        key.push(new ObjectId(bytes));
        break;
      }
      default:
        throw new Error(`index key string holds an unknown type tag ${rank}`);
    }
  }
  return key;
}

/** The largest time a Date holds (ECMAScript TimeClip); beyond it a Date is invalid. */
const MAX_TIME = 8.64e15;

/** How many distinct strings a covered read remembers per field, and how many misses it tries after. */
const KNOWN_STRINGS = 16;
const KNOWN_MISSES = 256;

/**
 * The strings one field of a covered read has given so far. A field read from millions of keys (a
 * type, a state) holds few distinct values: a value already seen is handed back as the same string,
 * compared in place, instead of a new slice per key (an allocation, and a hash computed again by the
 * Map that groups on it). A field of many distinct values stops looking after KNOWN_MISSES misses.
 */
class KnownStrings {
  private readonly seen: string[] = [];
  private misses = 0;

  at(str: string, from: number, end: number): string {
    if (this.misses >= KNOWN_MISSES) return str.slice(from, end);
    const len = end - from;
    const seen = this.seen;
    for (let k = 0; k < seen.length; k++) {
      const s = seen[k] as string;
      if (s.length !== len) continue;
      let c = 0;
      while (c < len && s.charCodeAt(c) === str.charCodeAt(from + c)) c++;
      if (c === len) return s;
    }
    const s = str.slice(from, end);
    if (seen.length < KNOWN_STRINGS) seen.push(s);
    else this.misses++;
    return s;
  }
}

/**
 * Reads chosen positions of an encoded key into `out` (out[j] the value at positions[j]), for a
 * covered read. A date is written as its milliseconds, not as a Date (a covered $group reads
 * millions of them, mostly only to subtract them): the result is a mask with bit j set when out[j]
 * holds a date's milliseconds. Returns -1, leaving `out` unspecified, when a wanted value is not
 * certainly the document's own: null (the index holds null for a missing field too), 0 (-0 is stored
 * as 0), a date that is not a valid time, a type other than number, string, boolean and date, or a
 * descending wanted position. The caller then reads the document. At most 31 positions are read.
 */
export function keyValueReader(dirs: number[], positions: number[]): (str: string, out: unknown[]) => number {
  if (positions.length > 31) throw new RangeError('keyValueReader reads at most 31 positions');
  const last = Math.max(...positions);
  const slotOf = new Array<number>(last + 1).fill(-1);
  positions.forEach((p, j) => (slotOf[p] = j));
  if (positions.some((p) => (dirs[p] ?? 1) < 0)) return () => -1;
  const known = positions.map(() => new KnownStrings());
  return (str, out) => {
    let i = 0;
    let dates = 0;
    for (let pos = 0; pos <= last; pos++) {
      const desc = (dirs[pos] ?? 1) < 0;
      const first = str.charCodeAt(i);
      if (first === LOW || first === HIGH) return -1; // a bound, never a stored key
      const rank = (desc ? HIGH - first : first) - TAG;
      const slot = slotOf[pos] as number;
      i++;
      switch (rank) {
        case Rank.Null:
          if (slot >= 0) return -1;
          i++;
          break;
        case Rank.Bool:
          if (slot >= 0) out[slot] = str.charCodeAt(i) === 3;
          i++;
          break;
        case Rank.Number:
          if (slot >= 0) {
            const n = readDoubleAt(str, i, desc);
            if (n === 0) return -1;
            out[slot] = n;
          }
          i += 5;
          break;
        case Rank.Date:
          if (slot >= 0) {
            const n = readDoubleAt(str, i, desc);
            // What getTime() of the stored Date gives: an integer within TimeClip's range, never -0.
            if (!(Math.abs(n) <= MAX_TIME) || !Number.isInteger(n)) return -1;
            out[slot] = n + 0;
            dates |= 1 << slot;
          }
          i += 5;
          break;
        case Rank.String: {
          const end = str.indexOf(desc ? String.fromCharCode(HIGH - STRING_END) : STRING_TAIL, i);
          if (end < 0) return -1;
          if (slot >= 0) out[slot] = (known[slot] as KnownStrings).at(str, i, end);
          i = end + 1;
          break;
        }
        case Rank.ObjectId:
          if (slot >= 0) return -1;
          i += 8;
          break;
        default:
          return -1;
      }
    }
    return dates;
  };
}
