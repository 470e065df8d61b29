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
import { Timestamp, type Binary, type Document } from 'bson';
import { CommandError } from './errors.js';

export type OperationType =
  | 'insert'
  | 'update'
  | 'replace'
  | 'delete'
  | 'drop'
  | 'dropDatabase'
  | 'rename'
  | 'create'
  | 'createIndexes'
  | 'dropIndexes'
  | 'modify'
  | 'invalidate';

/** Events a stream sees only with showExpandedEvents (MongoDB 6.0+). */
export const EXPANDED_EVENTS: ReadonlySet<OperationType> = new Set([
  'create',
  'createIndexes',
  'dropIndexes',
  'modify',
]);

/**
 * One change. Documents are referenced, not copied: the engine never changes a stored document in
 * place (an update stores a new object), so keeping them costs no copy on the write path.
 */
export interface ChangeEvent {
  /** The event's cluster time as a number (see seqOf); eventClusterTime gives it as a Timestamp. */
  seq: number;
  operationType: OperationType;
  /** The wall clock when the event happened, in milliseconds; eventWallTime gives it as a Date. */
  wallMs: number;
  db: string;
  coll?: string;
  /** The collection's UUID; absent for views and dropDatabase, as in MongoDB. */
  uuid?: Binary;
  documentKey?: Document;
  fullDocument?: Document;
  /**
   * The version before the write. Kept for every update (updateDescription is computed from it when a
   * stream reads the event); for replaces and deletes only when the collection records pre-images.
   */
  before?: Document;
  /** The collection had changeStreamPreAndPostImages enabled: `before` (and an update's fullDocument) are its images. */
  images?: boolean;
  to?: { db: string; coll: string };
  /** operationDescription, for DDL events and rename. */
  description?: Document;
  /** A modify event's collection options before the change. */
  stateBeforeChange?: Document;
  /** The event is about a view: MongoDB reports those through system.views, which only database and cluster streams see. */
  view?: boolean;
  /**
   * What streams derive from the event, computed by the first one that reads it and shared by the
   * others (every stream on a collection reads each of its changes): read-only once set.
   */
  derived?: { token?: Document; update?: Document; updateExpanded?: Document };
}

/**
 * The event's cluster time, built when a stream renders the event: the log keeps only its sequence
 * number, one object fewer for each of the 100,000 events it holds, and most of them (changes of a
 * collection no stream watches) are never rendered.
 */
export function eventClusterTime(e: ChangeEvent): Timestamp {
  return timestampOf(e.seq);
}

/** The event's wallTime, built when a stream renders the event (as eventClusterTime). */
export function eventWallTime(e: ChangeEvent): Date {
  return new Date(e.wallMs);
}

/** The event's resume token (the same object for every stream: never changed). */
export function eventToken(e: ChangeEvent): Document {
  const derived = (e.derived ??= {});
  return (derived.token ??= encodeToken(e.seq));
}

/** An update event's updateDescription (shared by the streams that read it: never changed). */
export function eventUpdateDescription(e: ChangeEvent, expanded: boolean): Document {
  const derived = (e.derived ??= {});
  const before = e.before as Document;
  const after = e.fullDocument as Document;
  if (expanded) return (derived.updateExpanded ??= describeUpdate(before, after, true));
  return (derived.update ??= describeUpdate(before, after, false));
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
  // timestampOf's seconds and increment, without building the Timestamp (one token per event).
  const t = Math.floor(seq / INCREMENTS_PER_SECOND);
  return { _data: TOKEN_PREFIX + hex8(t) + hex8(seq - t * INCREMENTS_PER_SECOND) };
}

function hex8(n: number): string {
  return n.toString(16).toUpperCase().padStart(8, '0');
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
  /** Streams waiting for an event; `wants` (when given) tells which events are worth waking it for. */
  private waiters = new Set<{ wake: () => void; wants: ((e: ChangeEvent) => boolean) | undefined }>();

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
  append(full: ChangeEvent): ChangeEvent {
    if (full.seq <= this.head) throw new Error(`change event out of order: ${full.seq} after ${this.head}`);
    this.events.push(full);
    // Trim in chunks: dropping one event per append would copy the whole array every time.
    if (this.events.length > MAX_RETAINED + TRIM_CHUNK) {
      const dropped = this.events.splice(0, this.events.length - MAX_RETAINED);
      this.floor = (dropped[dropped.length - 1] as ChangeEvent).seq;
    }
    if (this.waiters.size > 0) {
      for (const w of [...this.waiters]) {
        if (w.wants && !w.wants(full)) continue;
        this.waiters.delete(w);
        w.wake();
      }
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
        { errorLabels: ['NonResumableChangeStreamError'] },
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
    for (const w of waiters) w.wake();
  }

  /**
   * Resolves on the next append of an event `wants` accepts (any event without it), on wakeAll(), or
   * after `ms`, whichever comes first. `wants` runs inside append, in the writing command: it must be
   * pure and cheap, and may only pass over events the waiter would do nothing with.
   */
  waitForAppend(ms: number, wants?: (e: ChangeEvent) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const waiter = {
        wake: (): void => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        },
        wants,
      };
      const timer = setTimeout(waiter.wake, Math.max(0, ms));
      this.waiters.add(waiter);
    });
  }
}

/**
 * A position in a document being diffed: its dotted path, the step that led there (a field name, or an
 * array index as a number) and whether the path is ambiguous from here on. Made only for the fields
 * that changed, and chained to its parent rather than copying the steps before it.
 */
interface Pos {
  path: string;
  step: string | number;
  ambiguous: boolean;
  parent: Pos | null;
}

/** What a diff found, in MongoDB's updateDescription shape. */
interface Diff {
  updatedFields: Document;
  removedFields: string[];
  truncatedArrays: Document[];
  /** Present only with showExpandedEvents: paths a reader could not split back into their steps. */
  disambiguatedPaths: Document | null;
}

const INDEX_LIKE = /^(0|[1-9][0-9]*)$/;

/**
 * What changed between two versions of a document, in MongoDB's updateDescription shape. With
 * `disambiguate` (showExpandedEvents), disambiguatedPaths lists, for each reported path that a reader
 * could not split back into its steps (a field name that looks like an array index, below the top
 * level, or that contains a dot), the path's steps with array indexes as numbers.
 */
export function describeUpdate(before: Document, after: Document, disambiguate = false): Document {
  const out: Diff = {
    updatedFields: {},
    removedFields: [],
    truncatedArrays: [],
    disambiguatedPaths: disambiguate ? {} : null,
  };
  diffDocs(out, null, before, after);
  const { updatedFields, removedFields, truncatedArrays, disambiguatedPaths } = out;
  return disambiguatedPaths
    ? { updatedFields, removedFields, truncatedArrays, disambiguatedPaths }
    : { updatedFields, removedFields, truncatedArrays };
}

function fieldPos(at: Pos | null, key: string): Pos {
  const ambiguous = (at !== null && (at.ambiguous || INDEX_LIKE.test(key))) || key.includes('.');
  return { path: at === null ? key : `${at.path}.${key}`, step: key, ambiguous, parent: at };
}

function elementPos(at: Pos, i: number): Pos {
  return { path: `${at.path}.${i}`, step: i, ambiguous: at.ambiguous, parent: at };
}

/** The path of `at`, recording its steps when a reader could not split it back. */
function note(out: Diff, at: Pos): string {
  if (at.ambiguous && out.disambiguatedPaths) {
    const steps: Array<string | number> = [];
    for (let p: Pos | null = at; p !== null; p = p.parent) steps.push(p.step);
    out.disambiguatedPaths[at.path] = steps.reverse();
  }
  return at.path;
}

function changed(out: Diff, at: Pos, a: unknown, b: unknown): void {
  if (isDoc(a) && isDoc(b)) diffDocs(out, at, a, b);
  else if (Array.isArray(a) && Array.isArray(b)) diffArrays(out, at, a, b);
  else out.updatedFields[note(out, at)] = b;
}

function diffDocs(out: Diff, at: Pos | null, a: Document, b: Document): void {
  for (const k of Object.keys(a)) if (!(k in b)) out.removedFields.push(note(out, fieldPos(at, k)));
  for (const k of Object.keys(b)) {
    if (!(k in a)) out.updatedFields[note(out, fieldPos(at, k))] = b[k];
    else if (!sameValue(a[k], b[k])) changed(out, fieldPos(at, k), a[k], b[k]);
  }
}

// Element by element, as MongoDB diffs arrays: changed elements, appended ones, and a new size when
// the array got shorter.
function diffArrays(out: Diff, at: Pos, a: unknown[], b: unknown[]): void {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (!sameValue(a[i], b[i])) changed(out, elementPos(at, i), a[i], b[i]);
  for (let i = n; i < b.length; i++) out.updatedFields[note(out, elementPos(at, i))] = b[i];
  if (b.length < a.length) out.truncatedArrays.push({ field: note(out, at), newSize: b.length });
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
