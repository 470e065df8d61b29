/**
 * The change log behind change streams: every write appends an event stamped with its cluster time;
 * an event's sequence number and its resume token are derived from that cluster time, so they keep
 * increasing across restarts of a durable server (the engine never lets its clock go back behind the
 * last persisted one). Streams read from the log and may wait for the next append.
 *
 * History is retained from `floor` on: a stream may resume at any position at or after it; before it,
 * events may have been lost (trimmed, or from before a restart) and resuming fails with
 * ChangeStreamHistoryLost, as MongoDB fails for a token that has fallen off the oplog.
 */
import { Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';

export interface ChangeEvent {
  seq: number;
  operationType:
    'insert' | 'update' | 'replace' | 'delete' | 'drop' | 'dropDatabase' | 'rename' | 'invalidate';
  clusterTime: Timestamp;
  wallTime: Date;
  db: string;
  coll?: string;
  documentKey?: Document;
  fullDocument?: Document;
  /** For updates: the version before, from which updateDescription is computed when a stream reads it. */
  before?: Document;
  to?: { db: string; coll: string };
}

const TOKEN_PREFIX = '82';
const MAX_RETAINED = 100_000;
const TRIM_CHUNK = 10_000;
/**
 * Increments per second a sequence number can hold: seconds × 2^21 + increment stays below 2^53 until
 * 2106. The engine's clock moves to the next second before its increment reaches this.
 */
export const INCREMENTS_PER_SECOND = 2 ** 21;

/** The sequence number of a cluster time: ordered as the cluster times are. */
export function seqOf(ts: Timestamp): number {
  return ts.high * INCREMENTS_PER_SECOND + Math.min(ts.low, INCREMENTS_PER_SECOND - 1);
}

export function timestampOf(seq: number): Timestamp {
  const t = Math.floor(seq / INCREMENTS_PER_SECOND);
  return new Timestamp({ t, i: seq - t * INCREMENTS_PER_SECOND });
}

/** The token carries the cluster time's seconds and increment, 8 hex digits each. */
export function encodeToken(seq: number): Document {
  const ts = timestampOf(seq);
  const hex = (n: number): string => n.toString(16).toUpperCase().padStart(8, '0');
  return { _data: TOKEN_PREFIX + hex(ts.high) + hex(ts.low) };
}

export function decodeToken(token: unknown): number {
  const data = (token as { _data?: unknown } | null)?._data;
  if (
    typeof data !== 'string' ||
    !data.startsWith(TOKEN_PREFIX) ||
    data.length !== 18 ||
    !/^[0-9A-Fa-f]+$/.test(data)
  ) {
    throw new CommandError('BadValue', `Invalid resume token: ${JSON.stringify(token)}`);
  }
  const t = Number.parseInt(data.slice(2, 10), 16);
  const i = Number.parseInt(data.slice(10), 16);
  return seqOf(new Timestamp({ t, i }));
}

export class ChangeLog {
  private events: ChangeEvent[] = [];
  /** Events at or before this sequence number may be missing; every later one is here. */
  private floor: number;
  private waiters = new Set<() => void>();

  constructor(floor = 0) {
    this.floor = floor;
  }

  /** The sequence number of the latest event (the floor before any). */
  get head(): number {
    const last = this.events[this.events.length - 1];
    return last ? last.seq : this.floor;
  }

  /** Where history starts: the engine sets it once it knows its clock (at start-up, after replay). */
  startHistoryAt(seq: number): void {
    this.events = [];
    this.floor = seq;
  }

  /** Appends an event, numbered by its cluster time (the object is kept, not copied). */
  append(event: Omit<ChangeEvent, 'seq'>): ChangeEvent {
    const full = event as ChangeEvent;
    full.seq = seqOf(full.clusterTime);
    if (full.seq <= this.head) throw new Error(`change event out of order: ${full.seq} after ${this.head}`);
    this.events.push(full);
    // Trim in chunks: dropping one event per append would copy the whole array every time.
    if (this.events.length > MAX_RETAINED + TRIM_CHUNK) {
      const dropped = this.events.splice(0, this.events.length - MAX_RETAINED);
      this.floor = (dropped[dropped.length - 1] as ChangeEvent).seq;
    }
    if (this.waiters.size > 0) {
      const waiters = [...this.waiters];
      this.waiters.clear();
      for (const w of waiters) w();
    }
    return full;
  }

  /** Forgets the events after `seq` (those of a command that was rolled back). */
  truncateAfter(seq: number): void {
    while (this.events.length > 0 && (this.events[this.events.length - 1] as ChangeEvent).seq > seq)
      this.events.pop();
  }

  /** Events after `seq`, oldest first. Throws when events after `seq` may have been lost. */
  *after(seq: number): Generator<ChangeEvent> {
    if (seq < this.floor) {
      throw new CommandError(
        'ChangeStreamHistoryLost',
        'Resume of change stream was not possible, as the resume point may no longer be in the oplog.',
      );
    }
    let lo = 0;
    let hi = this.events.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.events[mid] as ChangeEvent).seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.events.length; i++) yield this.events[i] as ChangeEvent;
  }

  /** The position just before `ts`: a stream starting there sees the events at `ts` and later. */
  seqBefore(ts: Timestamp): number {
    return seqOf(ts) - 1;
  }

  /** Wakes every waiting stream now, without an event (shutdown: closed streams then answer at once). */
  wakeAll(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  /** Resolves on the next append or after `ms`, whichever comes first. */
  waitForAppend(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.waiters.add(done);
    });
  }
}

/** What changed between two versions of a document, in MongoDB's updateDescription shape. */
export function describeUpdate(before: Document, after: Document): Document {
  const updatedFields: Document = {};
  const removedFields: string[] = [];
  const truncatedArrays: Document[] = [];
  diff(before, after, '', updatedFields, removedFields, truncatedArrays);
  return { updatedFields, removedFields, truncatedArrays };
}

function diff(
  a: Document,
  b: Document,
  prefix: string,
  updated: Document,
  removed: string[],
  truncated: Document[],
): void {
  for (const k of Object.keys(a)) if (!(k in b)) removed.push(prefix + k);
  for (const k of Object.keys(b)) {
    const path = prefix + k;
    const va = a[k] as unknown;
    const vb = b[k] as unknown;
    if (!(k in a)) {
      updated[path] = vb;
      continue;
    }
    if (sameValue(va, vb)) continue;
    if (isDoc(va) && isDoc(vb)) {
      diff(va, vb, path + '.', updated, removed, truncated);
    } else if (Array.isArray(va) && Array.isArray(vb)) {
      const n = Math.min(va.length, vb.length);
      let prefixSame = true;
      for (let i = 0; i < n && prefixSame; i++) if (!sameValue(va[i], vb[i])) prefixSame = false;
      if (prefixSame && vb.length > va.length)
        for (let i = va.length; i < vb.length; i++) updated[`${path}.${i}`] = vb[i];
      else if (prefixSame && vb.length < va.length) truncated.push({ field: path, newSize: vb.length });
      else updated[path] = vb;
    } else {
      updated[path] = vb;
    }
  }
}

function isDoc(v: unknown): v is Document {
  return (
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype
  );
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (isDoc(a) && isDoc(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameValue(a[k], b[k]));
  }
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return (
    a.constructor === b.constructor && String(a) === String(b) && JSON.stringify(a) === JSON.stringify(b)
  );
}
