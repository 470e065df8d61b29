/**
 * A fast path for NDJSON lines that are flat objects: one pass over the line's bytes picks out the
 * fields a job needs (where each value is, and numbers already converted), with no string or object
 * made for the rest. JSON.parse builds every field of every row, which is most of a file job's time.
 *
 * It answers only lines it reads exactly as JSON.parse does: a flat object whose keys are plain ASCII
 * and whose values are strings without escapes, numbers, true, false or null. Anything else (a nested
 * value, an escape, a non-ASCII key, a malformed line, a blank line) makes `scan` return false, and the
 * caller parses that line with JSON.parse, so errors and odd cases keep their one implementation.
 */

/** What a wanted field holds on the scanned line. */
export const MISSING = 0;
export const STRING = 1;
export const NUMBER = 2;
export const TRUE = 3;
export const FALSE = 4;
export const NULL = 5;

// Exact powers of ten: an integer of at most 15 digits divided by one is the correctly rounded value
// of the decimal text (both operands are exact doubles), which is what JSON.parse returns.
const POW10 = Array.from({ length: 16 }, (_, i) => 10 ** i);

const isWs = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0d || b === 0x0a;
const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39;

export class FlatScanner {
  /** Per wanted field: MISSING, STRING, NUMBER, TRUE, FALSE or NULL. */
  readonly kind: Uint8Array;
  /** Per wanted field: where its value's text starts and ends (a string's include its quotes). */
  readonly start: Int32Array;
  readonly end: Int32Array;
  /** Per wanted field holding a string: 1 when it is all ASCII. */
  readonly ascii: Uint8Array;
  /** Per wanted field holding a number: its value. */
  readonly num: Float64Array;
  private readonly names: Uint8Array[];
  private buf: Buffer = Buffer.alloc(0);

  /** `fields`: plain field names (no dots). */
  constructor(fields: readonly string[]) {
    this.names = fields.map((f) => Buffer.from(f, 'utf8'));
    const n = fields.length;
    this.kind = new Uint8Array(n);
    this.start = new Int32Array(n);
    this.end = new Int32Array(n);
    this.ascii = new Uint8Array(n);
    this.num = new Float64Array(n);
  }

  /**
   * Whether a field can take the fast path: a plain name that a record's lookup reaches only as an own
   * field (a missing "toString" would otherwise be found on Object.prototype).
   */
  static handles(field: string): boolean {
    return !field.includes('.') && !(field in Object.prototype);
  }

  /** Scans `buf[from, to)` (one line); false: not a flat object this reads, use JSON.parse. */
  scan(buf: Buffer, from: number, to: number): boolean {
    this.buf = buf;
    this.kind.fill(MISSING);
    let i = from;
    while (i < to && isWs(buf[i]!)) i++;
    if (i >= to || buf[i] !== 0x7b) return false;
    i++;
    while (i < to && isWs(buf[i]!)) i++;
    if (i < to && buf[i] === 0x7d) {
      i++;
    } else {
      for (;;) {
        if (i >= to || buf[i] !== 0x22) return false;
        const ks = ++i;
        for (;;) {
          if (i >= to) return false;
          const b = buf[i]!;
          if (b === 0x22) break;
          if (b === 0x5c || b < 0x20 || b >= 0x80) return false;
          i++;
        }
        const f = this.field(ks, i);
        i++;
        while (i < to && isWs(buf[i]!)) i++;
        if (i >= to || buf[i] !== 0x3a) return false;
        i++;
        while (i < to && isWs(buf[i]!)) i++;
        i = this.value(i, to, f);
        if (i < 0) return false;
        while (i < to && isWs(buf[i]!)) i++;
        if (i >= to) return false;
        if (buf[i] === 0x2c) {
          i++;
          while (i < to && isWs(buf[i]!)) i++;
          continue;
        }
        if (buf[i] !== 0x7d) return false;
        i++;
        break;
      }
    }
    while (i < to && isWs(buf[i]!)) i++;
    return i === to;
  }

  /** The wanted field named by `buf[s, e)`, or -1. */
  private field(s: number, e: number): number {
    const len = e - s;
    const buf = this.buf;
    outer: for (let f = 0; f < this.names.length; f++) {
      const name = this.names[f]!;
      if (name.length !== len) continue;
      for (let j = 0; j < len; j++) if (name[j] !== buf[s + j]) continue outer;
      return f;
    }
    return -1;
  }

  /** Reads the value at `i` into field `f` (-1: skipped); returns where it ends, or -1. */
  private value(i: number, to: number, f: number): number {
    const buf = this.buf;
    const s = i;
    const c = buf[i]!;
    let kind: number;
    if (c === 0x22) {
      let ascii = 1;
      i++;
      for (;;) {
        if (i >= to) return -1;
        const b = buf[i]!;
        if (b === 0x22) break;
        if (b === 0x5c || b < 0x20) return -1;
        if (b >= 0x80) ascii = 0;
        i++;
      }
      i++;
      kind = STRING;
      if (f >= 0) this.ascii[f] = ascii;
    } else if (c === 0x2d || isDigit(c)) {
      let neg = false;
      if (c === 0x2d) {
        neg = true;
        i++;
      }
      let m = 0;
      let digits = 0;
      if (i >= to) return -1;
      if (buf[i] === 0x30) {
        i++;
        digits = 1;
      } else if (isDigit(buf[i]!)) {
        while (i < to && isDigit(buf[i]!)) {
          m = m * 10 + (buf[i]! - 0x30);
          digits++;
          i++;
        }
      } else return -1;
      let frac = 0;
      if (i < to && buf[i] === 0x2e) {
        i++;
        const fs = i;
        while (i < to && isDigit(buf[i]!)) {
          m = m * 10 + (buf[i]! - 0x30);
          i++;
        }
        frac = i - fs;
        if (frac === 0) return -1;
        digits += frac;
      }
      let exp = false;
      if (i < to && (buf[i] === 0x65 || buf[i] === 0x45)) {
        i++;
        if (i < to && (buf[i] === 0x2b || buf[i] === 0x2d)) i++;
        const es = i;
        while (i < to && isDigit(buf[i]!)) i++;
        if (i === es) return -1;
        exp = true;
      }
      kind = NUMBER;
      if (f >= 0) {
        if (exp || digits > 15) this.num[f] = Number(buf.toString('latin1', s, i));
        else {
          const v = frac === 0 ? m : m / POW10[frac]!;
          this.num[f] = neg ? -v : v;
        }
      }
    } else if (c === 0x74) {
      if (!this.word(i, to, 'true')) return -1;
      i += 4;
      kind = TRUE;
    } else if (c === 0x66) {
      if (!this.word(i, to, 'false')) return -1;
      i += 5;
      kind = FALSE;
    } else if (c === 0x6e) {
      if (!this.word(i, to, 'null')) return -1;
      i += 4;
      kind = NULL;
    } else return -1;
    if (f >= 0) {
      this.kind[f] = kind;
      this.start[f] = s;
      this.end[f] = i;
    }
    return i;
  }

  private word(i: number, to: number, w: string): boolean {
    if (i + w.length > to) return false;
    for (let j = 0; j < w.length; j++) if (this.buf[i + j] !== w.charCodeAt(j)) return false;
    return true;
  }

  /** Field `f`'s value as JSON.parse gives it (undefined when missing). */
  valueOf(f: number): unknown {
    switch (this.kind[f]) {
      case STRING:
        return this.ascii[f]
          ? this.buf.toString('latin1', this.start[f]! + 1, this.end[f]! - 1)
          : this.buf.toString('utf8', this.start[f]! + 1, this.end[f]! - 1);
      case NUMBER:
        return this.num[f];
      case TRUE:
        return true;
      case FALSE:
        return false;
      case NULL:
        return null;
      default:
        return undefined;
    }
  }
}
