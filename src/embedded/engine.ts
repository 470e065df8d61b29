/**
 * The storage engine: databases of collections, the operation clock, the change log and the
 * effects of each command, handed to the durable store (when there is one) before the reply.
 * Everything here is synchronous, so a command runs without interleaving with any other.
 */
import { Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';
import type { DurableStore, IndexSpecRecord, LogRecord, SnapshotCollection } from './persistenceTypes.js';
import { ChangeLog, type ChangeEvent } from './changeLog.js';
import { Collection } from './collection.js';
import type { IndexSpec } from './indexes.js';
import { normalizeNumbers } from './numbers.js';
import { SessionRegistry } from './sessions.js';
import { assertWritable, checkValidator } from './views.js';

export interface WriteOptions {
  /** The command's bypassDocumentValidation. */
  bypassValidation?: boolean;
}

export class Engine {
  readonly dbs = new Map<string, Map<string, Collection>>();
  readonly changes = new ChangeLog();
  readonly sessions = new SessionRegistry();
  private pending: LogRecord[] = [];
  private lastSecs = 0;
  private inc = 0;
  private replaying = false;

  constructor(private readonly store?: DurableStore) {}

  /** A strictly increasing cluster time for each write. */
  nextOpTime(): Timestamp {
    const secs = Math.floor(Date.now() / 1000);
    if (secs > this.lastSecs) {
      this.lastSecs = secs;
      this.inc = 1;
    } else this.inc++;
    return new Timestamp({ t: this.lastSecs, i: this.inc });
  }

  lastOpTime(): Timestamp {
    if (this.lastSecs === 0) return new Timestamp({ t: Math.floor(Date.now() / 1000), i: 0 });
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

  createCollection(db: string, name: string, options: Document): Collection {
    validateCollectionName(db, name);
    if (this.getCollection(db, name)) throw new CommandError('NamespaceExists', `Collection ${db}.${name} already exists.`);
    let colls = this.dbs.get(db);
    if (!colls) this.dbs.set(db, (colls = new Map()));
    const coll = new Collection(db, name, options);
    colls.set(name, coll);
    this.record({ op: 'createCollection', db, coll: name, options });
    return coll;
  }

  dropCollection(db: string, name: string): boolean {
    const colls = this.dbs.get(db);
    if (!colls?.has(name)) return false;
    colls.delete(name);
    if (colls.size === 0) this.dbs.delete(db);
    this.record({ op: 'dropCollection', db, coll: name });
    this.emit({ operationType: 'drop', db, coll: name });
    return true;
  }

  dropDatabase(db: string): void {
    const colls = this.dbs.get(db);
    if (!colls) return;
    for (const name of [...colls.keys()]) this.emit({ operationType: 'drop', db, coll: name });
    this.dbs.delete(db);
    this.record({ op: 'dropDatabase', db });
    this.emit({ operationType: 'dropDatabase', db });
  }

  renameCollection(db: string, name: string, toDb: string, toName: string, dropTarget: boolean): void {
    const coll = this.getCollection(db, name);
    if (!coll) throw new CommandError('NamespaceNotFound', `Source collection ${db}.${name} does not exist`);
    validateCollectionName(toDb, toName);
    if (this.getCollection(toDb, toName)) {
      if (!dropTarget) throw new CommandError('NamespaceExists', `Target namespace ${toDb}.${toName} exists`);
      this.dropCollection(toDb, toName);
    }
    this.dbs.get(db)?.delete(name);
    if (this.dbs.get(db)?.size === 0) this.dbs.delete(db);
    let target = this.dbs.get(toDb);
    if (!target) this.dbs.set(toDb, (target = new Map()));
    coll.db = toDb;
    coll.name = toName;
    target.set(toName, coll);
    this.record({ op: 'renameCollection', db, coll: name, toDb, toColl: toName });
    this.emit({ operationType: 'rename', db, coll: name, to: { db: toDb, coll: toName } });
  }

  insert(coll: Collection, doc: Document, opts: WriteOptions = {}): void {
    assertWritable(coll);
    if (!opts.bypassValidation) checkValidator(coll, doc);
    coll.insert(doc);
    this.record({ op: 'insert', db: coll.db, coll: coll.name, doc });
    this.emit({ operationType: 'insert', db: coll.db, coll: coll.name, documentKey: { _id: doc._id }, fullDocument: doc });
  }

  /** Stores a new version of a document; `replacement` chooses the change event's type. */
  replace(coll: Collection, before: Document, after: Document, replacement: boolean, opts: WriteOptions = {}): void {
    assertWritable(coll);
    if (!opts.bypassValidation) checkValidator(coll, after, before);
    coll.replace(before, after);
    this.record({ op: 'replace', db: coll.db, coll: coll.name, doc: after });
    if (replacement) {
      this.emit({ operationType: 'replace', db: coll.db, coll: coll.name, documentKey: { _id: after._id }, fullDocument: after });
    } else {
      this.emit({
        operationType: 'update',
        db: coll.db,
        coll: coll.name,
        documentKey: { _id: after._id },
        fullDocument: after,
        before,
      });
    }
  }

  delete(coll: Collection, doc: Document): void {
    assertWritable(coll);
    coll.remove(doc);
    this.record({ op: 'delete', db: coll.db, coll: coll.name, id: doc._id });
    this.emit({ operationType: 'delete', db: coll.db, coll: coll.name, documentKey: { _id: doc._id } });
  }

  /** collMod: the collection's new options (validator, validation level and action, view definition). */
  setOptions(coll: Collection, options: Document): void {
    coll.options = options;
    this.record({ op: 'collMod', db: coll.db, coll: coll.name, options });
  }

  createIndex(coll: Collection, spec: IndexSpec): void {
    assertWritable(coll);
    coll.addIndex(spec);
    this.record({ op: 'createIndex', db: coll.db, coll: coll.name, spec: toSpecRecord(spec) });
  }

  dropIndex(coll: Collection, name: string): void {
    coll.indexes.delete(name);
    this.record({ op: 'dropIndex', db: coll.db, coll: coll.name, name });
  }

  private emit(event: Omit<ChangeEvent, 'seq' | 'clusterTime' | 'wallTime'>): void {
    if (this.replaying) return;
    const e = event as ChangeEvent;
    e.clusterTime = this.nextOpTime();
    e.wallTime = new Date();
    this.changes.append(e);
  }

  private record(rec: LogRecord): void {
    if (this.store && !this.replaying) this.pending.push(rec);
  }

  /** Makes the effects of the command that just ran durable; called before its reply is sent. */
  commit(): void {
    if (!this.store) return;
    if (this.pending.length > 0) {
      const records = this.pending;
      this.pending = [];
      this.store.append(records);
    }
    if (this.store.shouldCompact()) this.store.compact(this.snapshot());
  }

  snapshot(): SnapshotCollection[] {
    const out: SnapshotCollection[] = [];
    for (const colls of this.dbs.values()) {
      for (const c of colls.values()) {
        out.push({
          db: c.db,
          coll: c.name,
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
        const coll = this.createCollection(s.db, s.coll, s.options ?? {});
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
        if (!this.getCollection(r.db, r.coll)) this.createCollection(r.db, r.coll, r.options ?? {});
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
    }
  }
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
  if (typeof name !== 'string' || name.length === 0) throw new CommandError('InvalidNamespace', `Invalid collection name: '${String(name)}'`);
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
