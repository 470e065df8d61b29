/**
 * The change log behind change streams: every write appends an event with a sequence number;
 * resume tokens encode that number. Streams read from it and may wait for the next append.
 */
import { Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';

export interface ChangeEvent {
  seq: number;
  operationType: 'insert' | 'update' | 'replace' | 'delete' | 'drop' | 'dropDatabase' | 'rename' | 'invalidate';
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

export function encodeToken(seq: number): Document {
  return { _data: TOKEN_PREFIX + seq.toString(16).toUpperCase().padStart(16, '0') };
}

export function decodeToken(token: unknown): number {
  const data = (token as { _data?: unknown } | null)?._data;
  if (typeof data !== 'string' || !data.startsWith(TOKEN_PREFIX) || data.length !== 18) {
    throw new CommandError('BadValue', `Invalid resume token: ${JSON.stringify(token)}`);
  }
  const n = Number.parseInt(data.slice(2), 16);
  if (!Number.isFinite(n)) throw new CommandError('BadValue', `Invalid resume token: ${data}`);
  return n;
}

export class ChangeLog {
  private events: ChangeEvent[] = [];
  private nextSeq = 1;
  private waiters = new Set<() => void>();

  /** The sequence number of the latest event (0 before any). */
  get head(): number {
    return this.nextSeq - 1;
  }

  /** Appends an event, giving it the next sequence number (the object is kept, not copied). */
  append(event: Omit<ChangeEvent, 'seq'>): ChangeEvent {
    const full = event as ChangeEvent;
    full.seq = this.nextSeq++;
    this.events.push(full);
    // Trim in chunks: dropping one event per append would copy the whole array every time.
    if (this.events.length > MAX_RETAINED + TRIM_CHUNK) this.events.splice(0, this.events.length - MAX_RETAINED);
    if (this.waiters.size > 0) {
      const waiters = [...this.waiters];
      this.waiters.clear();
      for (const w of waiters) w();
    }
    return full;
  }

  /** Forgets the events after `seq` (those of a command that was rolled back); their numbers are reused. */
  truncateAfter(seq: number): void {
    if (seq >= this.head) return;
    while (this.events.length > 0 && (this.events[this.events.length - 1] as ChangeEvent).seq > seq) this.events.pop();
    this.nextSeq = seq + 1;
  }

  /** Events after `seq`, oldest first. Throws when `seq` has already been trimmed away. */
  *after(seq: number): Generator<ChangeEvent> {
    const first = this.events[0];
    if (first && seq < first.seq - 1) {
      throw new CommandError('ChangeStreamHistoryLost', 'Resume of change stream was not possible, as the resume point may no longer be in the oplog.');
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

  /** The last sequence number whose cluster time is before `ts`. */
  seqBefore(ts: Timestamp): number {
    let seq = this.events.length > 0 ? (this.events[0] as ChangeEvent).seq - 1 : this.head;
    for (const e of this.events) {
      if (e.clusterTime.compare(ts) >= 0) break;
      seq = e.seq;
    }
    return seq;
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

function diff(a: Document, b: Document, prefix: string, updated: Document, removed: string[], truncated: Document[]): void {
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
      if (prefixSame && vb.length > va.length) for (let i = va.length; i < vb.length; i++) updated[`${path}.${i}`] = vb[i];
      else if (prefixSame && vb.length < va.length) truncated.push({ field: path, newSize: vb.length });
      else updated[path] = vb;
    } else {
      updated[path] = vb;
    }
  }
}

function isDoc(v: unknown): v is Document {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (isDoc(a) && isDoc(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameValue(a[k], b[k]));
  }
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  return a.constructor === b.constructor && String(a) === String(b) && JSON.stringify(a) === JSON.stringify(b);
}
