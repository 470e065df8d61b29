/**
 * Type conversions of data_transform. Strict by design: a value converts only when nothing is lost or
 * guessed (no "3.7" → 3, no "2024-02-30" → March 1st), so an error policy decides about the rest.
 * null, a missing field and an empty (or blank) string are "no value" and stay null without error.
 */

export type ConvertTarget = 'int' | 'float' | 'bool' | 'date' | 'string';

export interface ConvertOptions {
  to: ConvertTarget;
  /** date: what a converted date becomes (default iso: "2024-01-31T12:00:00.000Z"). */
  format?: 'iso' | 'epoch_ms' | 'epoch_s';
  /** date: the unit of a number given as a date (default ms, as MongoDB's $toDate reads it). */
  epoch_unit?: 'ms' | 's';
}

export type Converted = { ok: true; value: unknown } | { ok: false; message: string };

const INT = /^[+-]?\d+$/;
const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const TRUE = new Set(['true', 't', 'yes', 'y', '1']);
const FALSE = new Set(['false', 'f', 'no', 'n', '0']);
// Date, optionally time (T or a space) with seconds, fraction and offset; no offset means UTC.
const DATE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

const fail = (message: string): Converted => ({ ok: false, message });

function toInt(v: unknown): Converted {
  if (typeof v === 'number') {
    return Number.isSafeInteger(v) ? { ok: true, value: v } : fail('not an integer (or beyond ±2^53)');
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (!INT.test(s)) return fail('not an integer');
    const n = Number(s);
    return Number.isSafeInteger(n) ? { ok: true, value: n } : fail('integer beyond ±2^53');
  }
  return fail(`a ${kind(v)} does not convert to int`);
}

function toFloat(v: unknown): Converted {
  if (typeof v === 'number') return { ok: true, value: v };
  if (typeof v === 'string') {
    const s = v.trim();
    if (!FLOAT.test(s)) return fail('not a number');
    const n = Number(s);
    return Number.isFinite(n) ? { ok: true, value: n } : fail('beyond the range of a double');
  }
  return fail(`a ${kind(v)} does not convert to float`);
}

function toBool(v: unknown): Converted {
  if (typeof v === 'boolean') return { ok: true, value: v };
  if (v === 1 || v === 0) return { ok: true, value: v === 1 };
  if (typeof v === 'string') {
    const s = v.trim().toLowerCase();
    if (TRUE.has(s)) return { ok: true, value: true };
    if (FALSE.has(s)) return { ok: true, value: false };
    return fail('not a boolean (true/false, t/f, yes/no, y/n, 1/0)');
  }
  return fail(`a ${kind(v)} does not convert to bool`);
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Epoch milliseconds of an ISO-8601 date or date-time, or an error. */
function parseDate(s: string): number | string {
  const m = DATE.exec(s);
  if (!m) return 'not a date (YYYY-MM-DD, optionally THH:MM[:SS[.fff]] and Z or ±HH:MM)';
  const [y, mo, d, h = 0, mi = 0, sec = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((x) =>
    x === undefined ? undefined : Number(x),
  ) as number[];
  if (mo! < 1 || mo! > 12 || d! < 1 || d! > daysIn(y!, mo!)) return 'not a calendar date';
  if (h > 23 || mi > 59 || sec > 59) return 'not a time of day';
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  let offsetMin = 0;
  const tz = m[8];
  if (tz && tz !== 'Z') {
    const digits = tz.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2));
    if (oh > 23 || om > 59) return 'not a UTC offset';
    offsetMin = (tz[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const t = Date.UTC(y!, mo! - 1, d!, h, mi, sec, ms) - offsetMin * 60_000;
  // Years 0-99 are shifted by Date.UTC; setUTCFullYear puts them back.
  if (y! < 100) {
    const fixed = new Date(t);
    fixed.setUTCFullYear(fixed.getUTCFullYear() - 1900);
    return fixed.getTime();
  }
  return t;
}

function toDate(v: unknown, opts: ConvertOptions): Converted {
  let t: number;
  if (typeof v === 'number') {
    t = opts.epoch_unit === 's' ? v * 1000 : v;
  } else if (typeof v === 'string') {
    const p = parseDate(v.trim());
    if (typeof p === 'string') return fail(p);
    t = p;
  } else {
    return fail(`a ${kind(v)} does not convert to date`);
  }
  // The range of a JavaScript (and BSON) date: ±8.64e15 ms.
  if (!Number.isFinite(t) || Math.abs(t) > 8.64e15) return fail('outside the range of dates');
  switch (opts.format ?? 'iso') {
    case 'epoch_ms':
      return { ok: true, value: t };
    case 'epoch_s':
      return { ok: true, value: t / 1000 };
    default:
      return { ok: true, value: new Date(t).toISOString() };
  }
}

function toStr(v: unknown): Converted {
  if (typeof v === 'string') return { ok: true, value: v };
  if (typeof v === 'number' || typeof v === 'boolean') return { ok: true, value: String(v) };
  return { ok: true, value: JSON.stringify(v) };
}

function kind(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  return typeof v === 'object' ? 'object' : typeof v;
}

/** Converts one value; "no value" (null, missing, blank string) stays null. */
export function convertValue(value: unknown, opts: ConvertOptions): Converted {
  if (value === null || value === undefined) return { ok: true, value: null };
  if (opts.to !== 'string' && typeof value === 'string' && value.trim() === '')
    return { ok: true, value: null };
  switch (opts.to) {
    case 'int':
      return toInt(value);
    case 'float':
      return toFloat(value);
    case 'bool':
      return toBool(value);
    case 'date':
      return toDate(value, opts);
    case 'string':
      return toStr(value);
  }
}
