/**
 * A request's BSON decoded in one walk straight into the server's stored shape (numbers.ts): int32 as
 * numbers, doubles as numbers (integral ones as bson Double), int64 as Long. The same result as bson's
 * deserializer keeping every number's wrapper followed by normalizeNumbers, without building an Int32 or
 * Double wrapper per number and walking the whole document a second time, and without bson's reading of
 * its options at every nested document.
 *
 * It reads the types a command carries (documents, arrays, strings, numbers, dates, booleans, null,
 * ObjectIds, binaries, timestamps) and answers undefined for anything else: another type, a field that
 * bson turns into something other than a plain field ('__proto__', a DBRef's '$ref'), a
 * string that may not be valid UTF-8, or any structure bson would refuse. The caller then decodes with
 * bson, which gives the document or its exact error, so nothing decoded here differs from it.
 */
import { Binary, Double, Long, ObjectId, Timestamp, UUID, type Document } from 'bson';
import { isInt32Number } from './numbers.js';

const DOUBLE = 0x01;
const STRING = 0x02;
const OBJECT = 0x03;
const ARRAY = 0x04;
const BINARY = 0x05;
const OBJECT_ID = 0x07;
const BOOLEAN = 0x08;
const DATE = 0x09;
const NULL = 0x0a;
const INT32 = 0x10;
const TIMESTAMP = 0x11;
const INT64 = 0x12;
/** Binary subtypes bson reads in its own way (the old binary, with an inner length) or converts (UUID). */
const BINARY_OLD = 0x02;
const BINARY_UUID = 0x04;

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
/** A double's bytes are copied in wire order (little-endian): a big-endian host leaves it to bson. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Thrown inside the walk when it must give up; never escapes decodeRequestDocument. */
const GIVE_UP = new Error('not decoded here');

function int32(b: Buffer, at: number): number {
  return (
    (b[at] as number) |
    ((b[at + 1] as number) << 8) |
    ((b[at + 2] as number) << 16) |
    ((b[at + 3] as number) << 24)
  );
}

/**
 * The document `bytes` holds, as deserializeKeepingTypes gives it, or undefined when bson must decode it
 * (see above).
 */
export function decodeRequestDocument(bytes: Buffer): Document | undefined {
  const n = bytes.length;
  if (!LITTLE_ENDIAN || n < 5 || int32(bytes, 0) !== n || bytes[n - 1] !== 0) return undefined;
  try {
    return readObject(bytes, 0, n) as Document;
  } catch {
    // A give-up, a stack too deep for this walk's frames, a value a bson class refused: bson decides.
    return undefined;
  }
}

/**
 * The document (or array, `isArray`) at `start`, whose length must keep it within `limit`. Its elements
 * must end exactly at its terminator, as bson requires.
 */
function readObject(b: Buffer, start: number, limit: number, isArray = false): Document | unknown[] {
  const size = int32(b, start);
  if (size < 5 || size > limit - start) throw GIVE_UP;
  const end = start + size - 1;
  if (b[end] !== 0) throw GIVE_UP;
  const out: Document | unknown[] = isArray ? [] : {};
  let index = 0;
  let pos = start + 4;
  while (pos < end) {
    const type = b[pos] as number;
    if (type === 0) throw GIVE_UP;
    const nameStart = pos + 1;
    let i = nameStart;
    while (i < end && b[i] !== 0) i++;
    if (i >= end) throw GIVE_UP;
    const name = isArray ? undefined : fieldName(b, nameStart, i);
    pos = i + 1;
    let value: unknown;
    switch (type) {
      case DOUBLE: {
        if (pos + 8 > end) throw GIVE_UP;
        for (let k = 0; k < 8; k++) f64Bytes[k] = b[pos + k] as number;
        const v = f64[0] as number;
        value = isInt32Number(v) ? new Double(v) : v;
        pos += 8;
        break;
      }
      case STRING: {
        const len = int32(b, pos);
        pos += 4;
        if (len <= 0 || len > end - pos || b[pos + len - 1] !== 0) throw GIVE_UP;
        value = stringValue(b, pos, pos + len - 1);
        pos += len;
        break;
      }
      case OBJECT:
      case ARRAY: {
        if (pos + 4 > end) throw GIVE_UP;
        value = readObject(b, pos, end, type === ARRAY);
        pos += int32(b, pos);
        break;
      }
      case BINARY: {
        if (pos + 5 > end) throw GIVE_UP;
        const len = int32(b, pos);
        const subtype = b[pos + 4] as number;
        pos += 5;
        if (len < 0 || len > end - pos || subtype === BINARY_OLD) throw GIVE_UP;
        const bin = new Binary(b.subarray(pos, pos + len), subtype);
        value = subtype === BINARY_UUID && UUID.isValid(bin) ? bin.toUUID() : bin;
        pos += len;
        break;
      }
      case OBJECT_ID: {
        if (pos + 12 > end) throw GIVE_UP;
        // Memory of its own: a stored _id must not keep the whole request alive.
        const id = Buffer.allocUnsafe(12);
        for (let k = 0; k < 12; k++) id[k] = b[pos + k] as number;
        value = new ObjectId(id);
        pos += 12;
        break;
      }
      case BOOLEAN: {
        if (pos + 1 > end) throw GIVE_UP;
        const v = b[pos];
        if (v !== 0 && v !== 1) throw GIVE_UP;
        value = v === 1;
        pos += 1;
        break;
      }
      case DATE: {
        if (pos + 8 > end) throw GIVE_UP;
        value = new Date(int32(b, pos + 4) * 4294967296 + (int32(b, pos) >>> 0));
        pos += 8;
        break;
      }
      case NULL:
        value = null;
        break;
      case INT32:
        if (pos + 4 > end) throw GIVE_UP;
        value = int32(b, pos);
        pos += 4;
        break;
      case TIMESTAMP:
        if (pos + 8 > end) throw GIVE_UP;
        value = new Timestamp({ i: int32(b, pos) >>> 0, t: int32(b, pos + 4) >>> 0 });
        pos += 8;
        break;
      case INT64:
        if (pos + 8 > end) throw GIVE_UP;
        value = new Long(int32(b, pos), int32(b, pos + 4));
        pos += 8;
        break;
      default:
        throw GIVE_UP;
    }
    if (name === undefined) (out as unknown[])[index++] = value;
    else (out as Document)[name] = value;
  }
  return out;
}

/** A field name as bson reads it (UTF-8, not validated); a name bson treats specially gives up. */
function fieldName(b: Buffer, from: number, to: number): string {
  const name = ascii(b, from, to) ?? b.toString('utf8', from, to);
  // '__proto__' is defined rather than assigned by bson; a document with '$ref' may become a DBRef
  // (which needs '$ref' and '$id').
  if (name === '__proto__' || name === '$ref') throw GIVE_UP;
  return name;
}

/** A string value: bson validates its UTF-8, so one that may be invalid is left to bson. */
function stringValue(b: Buffer, from: number, to: number): string {
  const plain = ascii(b, from, to);
  if (plain !== undefined) return plain;
  const s = b.toString('utf8', from, to);
  // Invalid bytes decode as U+FFFD (as may a valid one): bson then checks the bytes and may refuse them.
  if (s.includes('\ufffd')) throw GIVE_UP;
  return s;
}

/**
 * Recently read short ASCII strings, by a hash of their bytes: field names and the values a command
 * repeats (states, types, owners) come back as the same string instead of a new one built a character
 * at a time. Strings are immutable, so sharing one is invisible.
 */
const SHORT = 24;
const recent: (string | undefined)[] = new Array<string | undefined>(1024).fill(undefined);

/** Bytes that are all ASCII as a string; undefined when one is not. */
function ascii(b: Buffer, from: number, to: number): string | undefined {
  const n = to - from;
  if (n > SHORT) {
    for (let i = from; i < to; i++) if ((b[i] as number) > 0x7f) return undefined;
    return latin1(b, from, to);
  }
  let h = n;
  for (let i = from; i < to; i++) {
    const c = b[i] as number;
    if (c > 0x7f) return undefined;
    h = Math.imul(h ^ c, 0x01000193);
  }
  const slot = (h ^ (h >>> 15)) & 1023;
  const seen = recent[slot];
  if (seen !== undefined && seen.length === n) {
    let same = true;
    for (let i = 0; i < n; i++)
      if (seen.charCodeAt(i) !== b[from + i]) {
        same = false;
        break;
      }
    if (same) return seen;
  }
  // Up to 12 characters a concatenation builds a flat string; past that it would build a rope.
  let s = '';
  if (n <= 12) for (let i = from; i < to; i++) s += String.fromCharCode(b[i] as number);
  else s = latin1(b, from, to);
  recent[slot] = s;
  return s;
}

/**
 * Node's Buffer reads latin1 with latin1Slice (what toString('latin1') ends in, after choosing the
 * encoding); taken straight when present, as that choice costs as much as reading a short string.
 */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (from: number, to: number) => string })
  .latin1Slice;

function latin1(b: Buffer, from: number, to: number): string {
  return latin1Slice !== undefined ? latin1Slice.call(b, from, to) : b.toString('latin1', from, to);
}
