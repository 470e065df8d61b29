/**
 * The storage engine: databases of collections, the operation clock, the change log and the
 * effects of each command, handed to the durable store (when there is one) before the reply.
 * Everything here is synchronous, so a command runs without interleaving with any other.
 *
 * A command changes memory as it runs (later statements of a batch must see earlier ones, unique
 * indexes must check against them), so effects cannot simply wait for the append. Instead every
 * change records how to undo it; commit() appends the command's records and, if the append fails,
 * undoes the command in memory, so no later read sees effects that are not on disk.
 *
 * After a failed append the engine refuses every further write until it is restarted; reads go on.
 * Why not retry: the failure leaves the disk in a state we cannot vouch for (after EIO, Linux may
 * already have dropped the dirty pages of earlier writes and cleared the error), and the usual
 * causes (a full disk, a failing device) need an operator. A restart replays what is really on disk.
 * Why not exit: the engine also runs inside jobd's own process, which a library must not end; the
 * standalone jobd-embedded reports the failure through its exit status when it is stopped.
 *
 * The cluster clock (seconds since the epoch and an increment, as MongoDB's Timestamp) stamps every
 * change event; with a data directory the time of the latest event is logged with each command, and
 * start-up resumes the clock from it, so cluster times and resume tokens never go back across restarts.
 * The change history itself is not persisted: after a restart it starts at that latest event, so a
 * stream that had read up to it resumes, and an older token gets ChangeStreamHistoryLost.
 */
import { BSON, Timestamp, type Binary, type Document } from 'bson';
import { CommandError } from './errors.js';
import type { DurableStore, IndexSpecRecord, LogRecord, SnapshotCollection } from './persistenceTypes.js';
import { ChangeLog, INCREMENTS_PER_SECOND, seqOf, timestampOf, type ChangeEvent } from './changeLog.js';
import { Collection, legacyUuid } from './collection.js';
import type { IndexSpec } from './indexes.js';
import {
  createEvent,
  dropEvent,
  indexesEvent,
  modifyEvent,
  renameEvent,
  type NewChangeEvent,
} from './ddlEvents.js';
import { normalizeNumbers } from './numbers.js';
import { SessionRegistry } from './sessions.js';
import { assertWritable, checkValidator } from './views.js';
import { CompactionScheduler } from './compaction.js';
import { checkStorable, type WriteOrigin } from './limits.js';
import {
  RetryableWriteTable,
  retryableWriteDoc,
  type RetryableWrite,
  type RetryableWriteDoc,
} from './retryableWrites.js';

/** Where a snapshot keeps the engine's own state, beside the collections (MongoDB's namespaces for it). */
const TXN_NS = { db: 'config', coll: 'transactions' };
const CLOCK_NS = { db: 'local', coll: 'replset.clusterTime' };
const isNs = (ns: { db: string; coll: string }, db: string, coll: string): boolean =>
  ns.db === db && ns.coll === coll;

/** A retryable write that has run, and the reply to remember for it. */
export interface RetryableResult {
  write: RetryableWrite;
  reply: Document;
  /** The reply's BSON as sent without the cluster time fields, when the caller has it. */
  bytes?: Uint8Array | undefined;
}

export interface WriteOptions {
  /** The command's bypassDocumentValidation. */
  bypassValidation?: boolean;
  /** Which error a document over the size limit gets (default: insert for insert, update for replace). */
  origin?: WriteOrigin;
  /** An upper bound on the document's BSON size known to the caller; spares the exact measure when small. */
  sizeBound?: number;
}

/** A point in the current command's effects that a failed statement can be taken back to. */
export interface Savepoint {
  undo: number;
  pending: number;
  seq: number;
}

export class Engine {
  readonly dbs = new Map<string, Map<string, Collection>>();
  readonly changes: ChangeLog;
  readonly sessions = new SessionRegistry();
  readonly retryableWrites = new RetryableWriteTable();
  private pending: LogRecord[] = [];
  /** How to take back, newest last, each change made since the last commit. */
  private undo: (() => void)[] = [];
  /** The change log's head at the last commit: events after it belong to the uncommitted command. */
  private committedSeq: number;
  /** The change log's head as last written to the durable log. */
  private loggedHead: number;
  private lastSecs = Math.floor(Date.now() / 1000);
  private inc = 0;
  private replaying = false;
  /** Set once start-up has found a logged clock. */
  private restoredClock = false;
  /** Set by the first failed append; every later write is refused with it. */
  private failure: Error | undefined;
  private readonly compaction: CompactionScheduler | undefined;

  constructor(
    private readonly store?: DurableStore,
    private readonly log: (msg: string) => void = () => {},
  ) {
    if (store)
      this.compaction = new CompactionScheduler(
        store,
        () => this.snapshot(),
        log,
        () => this.pending.length === 0,
      );
    // Nothing before now is known: a stream may start right here (no event carries increment 0).
    this.changes = new ChangeLog(seqOf(this.lastOpTime()) - 1);
    this.committedSeq = this.loggedHead = this.changes.head;
  }

  /** True when acknowledged writes go to a durable log (a data directory), so j: true can be honoured. */
  get journaled(): boolean {
    return this.store !== undefined;
  }

  /** Flushes the durable log to the device (a write concern's j: true); throws when it cannot. */
  syncLog(): void {
    if (this.failure) throw this.failure;
    this.store?.sync();
  }

  /** Why writes are refused, once an append has failed. */
  get writeFailure(): Error | undefined {
    return this.failure;
  }

  /**
   * A strictly increasing cluster time for each change event. It follows the wall clock, but never
   * goes back when the wall clock does (nor behind the time restored at start-up); the increment
   * carries into the next second rather than outgrow a sequence number.
   */
  nextOpTime(): Timestamp {
    return timestampOf(this.nextSeq());
  }

  /** nextOpTime as its sequence number (seqOf), without building the Timestamp: one per change event. */
  private nextSeq(): number {
    const secs = Math.floor(Date.now() / 1000);
    if (secs > this.lastSecs) {
      this.lastSecs = secs;
      this.inc = 1;
    } else if (this.inc + 1 >= INCREMENTS_PER_SECOND) {
      this.lastSecs++;
      this.inc = 1;
    } else this.inc++;
    return this.lastSecs * INCREMENTS_PER_SECOND + this.inc;
  }

  lastOpTime(): Timestamp {
    return new Timestamp({ t: this.lastSecs, i: this.inc });
  }

  getCollection(db: string, name: string): Collection | undefined {
    return this.dbs.get(db)?.get(name);
  }

  listCollections(db: string): Collection[] {
    return [...(this.dbs.get(db)?.values() ?? [])];
  }

  /** The collection, created on first write as MongoDB does. */
  ensureCollection(db: string, name: string): Collection {
    return this.getCollection(db, name) ?? this.createCollection(db, name, {});
  }

  createCollection(db: string, name: string, options: Document, uuid?: Binary): Collection {
    validateCollectionName(db, name);
    if (isNs(TXN_NS, db, name) || isNs(CLOCK_NS, db, name)) {
      throw new CommandError(
        'InvalidNamespace',
        `${db}.${name} is reserved for the embedded server's own state`,
      );
    }
    if (this.getCollection(db, name))
      throw new CommandError('NamespaceExists', `Collection ${db}.${name} already exists.`);
    this.assertAcceptingWrites();
    // Data written before collections had UUIDs gets one derived from its name, the same at every start.
    const coll = new Collection(
      db,
      name,
      options,
      uuid ?? (this.replaying ? legacyUuid(db, name) : undefined),
    );
    this.link(coll);
    this.record({ op: 'createCollection', db, coll: name, options, uuid: coll.uuid }, () =>
      this.unlink(db, name),
    );
    this.emit(createEvent(coll));
    return coll;
  }

  dropCollection(db: string, name: string, emit = true): boolean {
    const colls = this.dbs.get(db);
    const coll = colls?.get(name);
    if (!colls || !coll) return false;
    this.assertAcceptingWrites();
    colls.delete(name);
    if (colls.size === 0) this.dbs.delete(db);
    this.record({ op: 'dropCollection', db, coll: name }, () => this.link(coll));
    if (emit) this.emit(dropEvent(coll));
    return true;
  }

  dropDatabase(db: string): void {
    const colls = this.dbs.get(db);
    if (!colls) return;
    this.assertAcceptingWrites();
    for (const coll of [...colls.values()]) this.emit(dropEvent(coll));
    this.dbs.delete(db);
    this.record({ op: 'dropDatabase', db }, () => this.dbs.set(db, colls));
    this.emit({ operationType: 'dropDatabase', db });
  }

  renameCollection(db: string, name: string, toDb: string, toName: string, dropTarget: boolean): void {
    const coll = this.getCollection(db, name);
    if (!coll) throw new CommandError('NamespaceNotFound', `Source collection ${db}.${name} does not exist`);
    validateCollectionName(toDb, toName);
    this.assertAcceptingWrites();
    const target = this.getCollection(toDb, toName);
    if (target) {
      if (!dropTarget) throw new CommandError('NamespaceExists', `Target namespace ${toDb}.${toName} exists`);
      // One event, as MongoDB logs one rename naming the collection it dropped.
      this.dropCollection(toDb, toName, false);
    }
    this.unlink(db, name);
    coll.db = toDb;
    coll.name = toName;
    this.link(coll);
    this.record({ op: 'renameCollection', db, coll: name, toDb, toColl: toName }, () => {
      this.unlink(toDb, toName);
      coll.db = db;
      coll.name = name;
      this.link(coll);
    });
    this.emit(renameEvent(coll, { db, coll: name }, target));
  }

  insert(coll: Collection, doc: Document, opts: WriteOptions = {}): void {
    assertWritable(coll);
    this.assertAcceptingWrites();
    checkStorable(doc, opts.origin ?? 'insert', opts.sizeBound);
    if (!opts.bypassValidation) checkValidator(coll, doc);
    coll.insert(doc);
    this.record({ op: 'insert', db: coll.db, coll: coll.name, doc }, () => coll.remove(doc));
    this.emit({
      operationType: 'insert',
      db: coll.db,
      coll: coll.name,
      uuid: coll.uuid,
      documentKey: { _id: doc._id },
      fullDocument: doc,
    });
  }

  /** Stores a new version of a document; `replacement` chooses the change event's type. */
  replace(
    coll: Collection,
    before: Document,
    after: Document,
    replacement: boolean,
    opts: WriteOptions = {},
  ): void {
    assertWritable(coll);
    this.assertAcceptingWrites();
    checkStorable(after, opts.origin ?? 'update', opts.sizeBound, before);
    if (!opts.bypassValidation) checkValidator(coll, after, before);
    coll.replace(before, after);
    this.record({ op: 'replace', db: coll.db, coll: coll.name, doc: after }, () =>
      coll.replace(after, before),
    );
    // An update keeps its previous version to describe the change. Images are references to the
    // stored versions, never copies: a collection without them pays nothing more.
    const event: NewChangeEvent = replacement
      ? {
          operationType: 'replace',
          db: coll.db,
          coll: coll.name,
          uuid: coll.uuid,
          documentKey: { _id: after._id },
          fullDocument: after,
        }
      : {
          operationType: 'update',
          db: coll.db,
          coll: coll.name,
          uuid: coll.uuid,
          documentKey: { _id: after._id },
          fullDocument: after,
          before,
        };
    if (coll.recordsImages) {
      event.before = before;
      event.images = true;
    }
    this.emit(event);
  }

  delete(coll: Collection, doc: Document): void {
    this.deleteMany(coll, [doc]);
  }

  /** Deletes documents of one collection: the same records and events as one delete each. */
  deleteMany(coll: Collection, docs: Document[]): void {
    if (docs.length === 0) return;
    assertWritable(coll);
    this.assertAcceptingWrites();
    coll.removeMany(docs);
    for (const doc of docs) this.recordDelete(coll, doc);
  }

  private recordDelete(coll: Collection, doc: Document): void {
    // Undone, the document comes back at the end of the collection's natural order.
    this.record({ op: 'delete', db: coll.db, coll: coll.name, id: doc._id }, () => coll.insert(doc));
    const event: NewChangeEvent = {
      operationType: 'delete',
      db: coll.db,
      coll: coll.name,
      uuid: coll.uuid,
      documentKey: { _id: doc._id },
    };
    if (coll.recordsImages) {
      event.before = doc;
      event.images = true;
    }
    this.emit(event);
  }

  /**
   * collMod: the collection's new options (validator, validation level and action, pre- and post-images,
   * view definition); `changes` are the options the command named, reported in the modify event.
   */
  setOptions(coll: Collection, options: Document, changes: Document = {}): void {
    this.assertAcceptingWrites();
    const previous = coll.options;
    coll.options = options;
    this.record({ op: 'collMod', db: coll.db, coll: coll.name, options }, () => (coll.options = previous));
    this.emit(modifyEvent(coll, changes, previous));
  }

  /**
   * Builds indexes, with their change events as MongoDB 7.0 reports them: on an empty collection each
   * index is its own createIndexes event; otherwise one index build commits them all in one event.
   */
  createIndexes(coll: Collection, specs: IndexSpec[]): void {
    assertWritable(coll);
    this.assertAcceptingWrites();
    const oneBuild = coll.docs.size > 0;
    for (const spec of specs) {
      const restore = indexRestorer(coll);
      coll.addIndex(spec);
      this.record({ op: 'createIndex', db: coll.db, coll: coll.name, spec: toSpecRecord(spec) }, restore);
      if (!oneBuild) this.emit(indexesEvent('createIndexes', coll, [spec]));
    }
    if (oneBuild && specs.length > 0) this.emit(indexesEvent('createIndexes', coll, specs));
  }

  dropIndex(coll: Collection, name: string): void {
    this.assertAcceptingWrites();
    const restore = indexRestorer(coll);
    const dropped = coll.indexes.get(name);
    coll.indexes.delete(name);
    this.record({ op: 'dropIndex', db: coll.db, coll: coll.name, name }, restore);
    if (dropped) this.emit(indexesEvent('dropIndexes', coll, [dropped.spec]));
  }

  private emit(event: NewChangeEvent): void {
    if (this.replaying) return;
    const e = event as ChangeEvent;
    e.seq = this.nextSeq();
    e.wallMs = Date.now();
    this.changes.append(e);
  }

  private record(rec: LogRecord, undo: () => void): void {
    if (this.replaying) return;
    // Undo is kept in memory too: a command that fails on a fault is taken back (see abort()).
    if (this.store) this.pending.push(rec);
    this.undo.push(undo);
  }

  /** Puts a collection object under its (db, name). */
  private link(coll: Collection): void {
    let colls = this.dbs.get(coll.db);
    if (!colls) this.dbs.set(coll.db, (colls = new Map()));
    colls.set(coll.name, coll);
  }

  private unlink(db: string, name: string): void {
    const colls = this.dbs.get(db);
    colls?.delete(name);
    if (colls?.size === 0) this.dbs.delete(db);
  }

  /** Refuses a write before it touches memory once the log has failed. */
  private assertAcceptingWrites(): void {
    if (this.failure && !this.replaying) {
      throw new CommandError('InternalError', `writes are refused: ${this.failure.message}`);
    }
  }

  /**
   * Makes the effects of the command that just ran durable; called before its reply is sent.
   * Throws (and has taken the effects back out of memory) when they could not be logged.
   */
  commit(retryable?: RetryableResult): void {
    const reply =
      retryable && retryable.reply.ok === 1
        ? (retryable.bytes ?? BSON.serialize(retryable.reply, { ignoreUndefined: true }))
        : undefined;
    if (!this.store) {
      this.undo = [];
      if (retryable && reply) this.retryableWrites.record(retryable.write, reply);
      this.committedSeq = this.changes.head;
      return;
    }
    if (this.pending.length > 0) {
      // Logged with the command's effects, so after a crash the write and its remembered reply both
      // replay or neither does. A retryable write without effects is remembered in memory only.
      if (retryable && reply) this.pending.push({ op: 'txn', ...retryableWriteDoc(retryable.write, reply) });
      const head = this.changes.head;
      if (head > this.loggedHead) this.pending.push({ op: 'clock', ts: timestampOf(head) });
      const records = this.pending;
      const undo = this.undo;
      this.pending = [];
      this.undo = [];
      try {
        if (this.failure) throw this.failure;
        this.store.append(records);
      } catch (err) {
        this.rollBack(undo);
        if (!this.failure) {
          const reason = err instanceof Error ? err.message : String(err);
          this.failure = new Error(
            `the durable log in ${this.store.dir} could not be written (${reason}); restart the server once the cause is fixed`,
            { cause: err },
          );
          this.log(
            `jobd-embedded: could not append to the durable log in ${this.store.dir}: ${reason}. ` +
              'The command was not applied; from now on writes are refused and reads continue. ' +
              'Fix the cause (disk space, I/O errors) and restart the server.',
          );
        }
        throw new CommandError('InternalError', `the write was not applied: ${this.failure.message}`);
      }
      this.loggedHead = this.changes.head;
      this.compaction?.noteAppend();
    }
    if (retryable && reply) this.retryableWrites.record(retryable.write, reply);
    this.committedSeq = this.changes.head;
  }

  /** Takes back every change since the last commit, newest first, with the change events they emitted. */
  private rollBack(undo: (() => void)[]): void {
    for (let i = undo.length - 1; i >= 0; i--) (undo[i] as () => void)();
    this.changes.truncateAfter(this.committedSeq);
  }

  /**
   * Takes back every effect of the command now running (it failed on a fault, or its reply cannot be
   * sent), as a failed append does: nothing of it is logged, streamed or left in memory.
   */
  abort(): void {
    const undo = this.undo;
    this.pending = [];
    this.undo = [];
    this.rollBack(undo);
  }

  /** Marks where the running command's effects stand, to take a failed statement back to it. */
  savepoint(): Savepoint {
    return { undo: this.undo.length, pending: this.pending.length, seq: this.changes.head };
  }

  /** Takes back the running command's effects made after `sp` (newest first), with their change events. */
  rollBackTo(sp: Savepoint): void {
    const undone = this.undo.splice(sp.undo);
    this.pending.length = Math.min(this.pending.length, sp.pending);
    for (let i = undone.length - 1; i >= 0; i--) (undone[i] as () => void)();
    this.changes.truncateAfter(sp.seq);
  }

  /**
   * For shutdown: no further scheduled compactions, and one last one so the next start-up has little to
   * replay (skipped after a failed append: the disk is not to be trusted). Never throws.
   */
  finalCompaction(): void {
    this.compaction?.stop();
    if (!this.failure) this.compaction?.run(true);
  }

  snapshot(): SnapshotCollection[] {
    const out: SnapshotCollection[] = [
      { ...CLOCK_NS, indexes: [], docs: [{ _id: 'clusterTime', ts: timestampOf(this.loggedHead) }] },
      { ...TXN_NS, indexes: [], docs: this.retryableWrites.toDocs() as unknown as Document[] },
    ];
    for (const colls of this.dbs.values()) {
      for (const c of colls.values()) {
        out.push({
          db: c.db,
          coll: c.name,
          uuid: c.uuid,
          options: c.options,
          indexes: [...c.indexes.values()].filter((i) => !i.isIdIndex).map((i) => toSpecRecord(i.spec)),
          docs: [...c.docs.values()],
        });
      }
    }
    return out;
  }

  /** Rebuilds the engine from a snapshot and the records written after it. */
  restore(snapshot: SnapshotCollection[], records: LogRecord[]): void {
    this.replaying = true;
    try {
      for (const s of snapshot) {
        if (isNs(CLOCK_NS, s.db, s.coll)) {
          for (const d of s.docs) this.restoreClock(d.ts as Timestamp);
          continue;
        }
        if (isNs(TXN_NS, s.db, s.coll)) {
          for (const d of s.docs) this.retryableWrites.restore(d as RetryableWriteDoc);
          continue;
        }
        const coll = this.createCollection(s.db, s.coll, s.options ?? {}, s.uuid);
        for (const spec of s.indexes) coll.addIndex(spec);
        for (const doc of s.docs) coll.insert(normalizeNumbers(doc));
      }
      for (const r of records) {
        if (r.op === 'insert' || r.op === 'replace') normalizeNumbers(r.doc);
        this.replay(r);
      }
    } finally {
      this.replaying = false;
    }
    this.changes.startHistoryAt(this.loggedHead);
    this.committedSeq = this.changes.head;
  }

  /** The latest logged event's time: the clock resumes at or after it, and history starts there. */
  private restoreClock(ts: Timestamp): void {
    const seq = seqOf(ts);
    if (this.restoredClock && seq <= this.loggedHead) return;
    this.restoredClock = true;
    this.loggedHead = seq;
    if (ts.high > this.lastSecs || (ts.high === this.lastSecs && ts.low > this.inc)) {
      this.lastSecs = ts.high;
      this.inc = ts.low;
    }
  }

  private replay(r: LogRecord): void {
    switch (r.op) {
      case 'insert': {
        const coll = this.ensureCollection(r.db, r.coll);
        const old = coll.get(r.doc._id);
        if (old) coll.replace(old, r.doc);
        else coll.insert(r.doc);
        return;
      }
      case 'replace': {
        const coll = this.ensureCollection(r.db, r.coll);
        const old = coll.get(r.doc._id);
        if (old) coll.replace(old, r.doc);
        else coll.insert(r.doc);
        return;
      }
      case 'delete': {
        const coll = this.getCollection(r.db, r.coll);
        const old = coll?.get(r.id);
        if (coll && old) coll.remove(old);
        return;
      }
      case 'createCollection':
        if (!this.getCollection(r.db, r.coll)) this.createCollection(r.db, r.coll, r.options ?? {}, r.uuid);
        return;
      case 'dropCollection':
        this.dropCollection(r.db, r.coll);
        return;
      case 'dropDatabase':
        this.dropDatabase(r.db);
        return;
      case 'createIndex': {
        const coll = this.ensureCollection(r.db, r.coll);
        if (!coll.indexes.has(r.spec.name)) coll.addIndex(r.spec);
        return;
      }
      case 'dropIndex':
        this.getCollection(r.db, r.coll)?.indexes.delete(r.name);
        return;
      case 'renameCollection':
        this.renameCollection(r.db, r.coll, r.toDb, r.toColl, true);
        return;
      case 'collMod': {
        const coll = this.getCollection(r.db, r.coll);
        if (coll) coll.options = r.options;
        return;
      }
      case 'txn':
        this.retryableWrites.restore(r);
        return;
      case 'clock':
        this.restoreClock(r.ts);
        return;
    }
  }
}

/** Puts a collection's indexes back exactly as they are now, in the same order. */
function indexRestorer(coll: Collection): () => void {
  const saved = [...coll.indexes.entries()];
  return () => {
    coll.indexes.clear();
    for (const [name, index] of saved) coll.indexes.set(name, index);
  };
}

function toSpecRecord(spec: IndexSpec): IndexSpecRecord {
  const out: IndexSpecRecord = { name: spec.name, key: spec.key };
  if (spec.unique) out.unique = true;
  if (spec.sparse) out.sparse = true;
  if (spec.partialFilterExpression) out.partialFilterExpression = spec.partialFilterExpression;
  if (spec.expireAfterSeconds !== undefined) out.expireAfterSeconds = spec.expireAfterSeconds;
  return out;
}

export function validateCollectionName(db: string, name: string): void {
  if (typeof name !== 'string' || name.length === 0)
    throw new CommandError('InvalidNamespace', `Invalid collection name: '${String(name)}'`);
  if (name.includes('\0') || name.startsWith('.') || name.includes('$')) {
    throw new CommandError('InvalidNamespace', `Invalid collection name: ${db}.${name}`);
  }
  validateDbName(db);
}

export function validateDbName(db: string): void {
  if (typeof db !== 'string' || db.length === 0 || /[/\\. "$\0]/.test(db) || db.length > 63) {
    throw new CommandError('InvalidNamespace', `Invalid database name: '${String(db)}'`);
  }
}
