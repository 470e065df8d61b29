/**
 * The boundary between the embedded server's in-memory engine and its on-disk durability.
 * The engine calls append() with the effects of one command before it acknowledges the command;
 * at start-up it rebuilds itself from load(); now and then it hands a full snapshot to compact().
 */
import type { Binary, Document, Long, Timestamp } from 'bson';

export interface IndexSpecRecord {
  name: string;
  key: Document;
  unique?: boolean;
  sparse?: boolean;
  partialFilterExpression?: Document;
  expireAfterSeconds?: number;
}

/** One effect of a write. Updates carry the whole post-image: replay never re-runs operators. */
export type LogRecord =
  | { op: 'insert'; db: string; coll: string; doc: Document }
  | { op: 'replace'; db: string; coll: string; doc: Document }
  | { op: 'delete'; db: string; coll: string; id: unknown }
  | { op: 'createCollection'; db: string; coll: string; options?: Document; uuid?: Binary }
  | { op: 'dropCollection'; db: string; coll: string }
  | { op: 'dropDatabase'; db: string }
  | { op: 'createIndex'; db: string; coll: string; spec: IndexSpecRecord }
  | { op: 'dropIndex'; db: string; coll: string; name: string }
  | { op: 'renameCollection'; db: string; coll: string; toDb: string; toColl: string }
  | { op: 'collMod'; db: string; coll: string; options: Document }
  /** A retryable write's reply, logged with its effects (see retryableWrites.ts). */
  | { op: 'txn'; lsid: Binary; txnNumber: Long; reply: Binary; at: Date }
  /** The cluster time of the latest change event, so the clock never goes back after a restart. */
  | { op: 'clock'; ts: Timestamp };

export interface SnapshotCollection {
  db: string;
  coll: string;
  /** The collection's UUID (absent in data written before collections had one). */
  uuid?: Binary;
  options?: Document;
  indexes: IndexSpecRecord[];
  docs: Document[];
}

export interface LoadedState {
  /** The last compacted snapshot (empty on a fresh data directory). */
  snapshot: SnapshotCollection[];
  /** Records written after the snapshot, in order, torn tail already dropped. */
  records: LogRecord[];
  /** True when a torn or corrupt tail was found and dropped. */
  droppedTornTail: boolean;
}

export interface DurableStore {
  readonly dir: string;
  load(): LoadedState;
  /** Durably append the effects of one command, as one unit: after a crash all or none of them replay. */
  append(records: LogRecord[]): void;
  /** Flush everything appended so far to the device (for a write concern with j: true). */
  sync(): void;
  /** True when the log has grown enough that the engine should call compact(). */
  shouldCompact(): boolean;
  /** Replace snapshot + log by this full state, crash-safely. */
  compact(state: SnapshotCollection[]): void;
  /** Release the data-directory lock. */
  close(): void;
}
