/**
 * Durable storage of the embedded server in a data directory:
 *
 *   LOCK                  the owning process (persistenceLock.ts)
 *   snapshot-<G>.jobd     full state as of generation G (absent for generation 0)
 *   log-<G>.jobd          effects of every command acknowledged since snapshot-<G>, one frame per command
 *
 * Every file starts with a header carrying its generation, then checksummed frames (persistenceFrames.ts).
 *
 * Durability: append() hands one buffer to one write(2) before the engine acknowledges the command.
 * Once write(2) returns the bytes are in the kernel's page cache and survive the death of the process,
 * SIGKILL included. With `fsync: 'always'` every append is also fdatasync'ed, which additionally survives
 * power loss and kernel crashes at the cost of a disk flush per command. The default is 'never': the
 * embedded server is the test database and the single-machine default, where a flush per write would
 * cost more than the loss it prevents; production uses a real MongoDB. After a power loss without fsync,
 * the log still replays as a consistent prefix: the first damaged frame and everything after it is dropped.
 *
 * Compaction, from generation G to G+1, with the crash outcome of each step:
 *   1. write snapshot-<G+1>.jobd.tmp, fsync          crash: the .tmp is deleted at start-up; G stands
 *   2. rename it to snapshot-<G+1>.jobd, fsync dir  crash: G+1 stands; log-<G> is stale (its records are
 *                                                   inside the snapshot) and is deleted, never replayed
 *   3. write log-<G+1>.jobd via .tmp + rename        crash before: start-up creates the empty log-<G+1>
 *   4. delete log-<G> and snapshot-<G>               crash before: start-up deletes them
 * Start-up always picks the highest snapshot generation and replays only the log of that same generation.
 */
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { DeserializeOptions, Document } from 'bson';
import type {
  DurableStore,
  IndexSpecRecord,
  LoadedState,
  LogRecord,
  SnapshotCollection,
} from './persistenceTypes.js';
import {
  FileKind,
  HEADER_BYTES,
  Tag,
  decodeDocuments,
  decodeHeader,
  encodeFrame,
  encodeFrameFromBytes,
  encodeHeader,
  fsyncDir,
  readHeader,
  scanFrames,
  serializeDocument,
  writeFully,
} from './persistenceFrames.js';
import { acquireDirLock, type DirLock } from './persistenceLock.js';

export { DataDirLockedError, LOCK_FILE } from './persistenceLock.js';

export interface DurableStoreOptions {
  /** 'never' (default): survives process crashes. 'always': fdatasync per append, survives power loss. */
  fsync?: 'always' | 'never';
  /** shouldCompact() once the log exceeds max(compactMinBytes, compactRatio × snapshot size). */
  compactMinBytes?: number;
  compactRatio?: number;
  /** How documents are decoded at load; pass the options the engine decodes wire messages with. */
  bsonOptions?: DeserializeOptions;
  /** Receives one line for each notable recovery action (a dropped torn tail, a finished crashed compaction). */
  log?: (message: string) => void;
}

export const DEFAULT_COMPACT_MIN_BYTES = 64 * 1024 * 1024;
export const DEFAULT_COMPACT_RATIO = 2;
const SNAPSHOT_FRAME_BYTES = 1024 * 1024;

/** What load() found beyond the LoadedState contract. */
export interface DurableLoadedState extends LoadedState {
  generation: number;
  /** Set when a torn or corrupt tail was dropped. */
  tornTail?: { file: string; offset: number; droppedBytes: number; reason: string };
}

/** The data directory holds files this build cannot read safely. */
export class DataDirCorruptError extends Error {
  readonly code = 'EMBEDDED_DATA_DIR_CORRUPT';
  readonly file: string;
  constructor(file: string, detail: string) {
    super(`cannot open data file ${file}: ${detail}`);
    this.name = 'DataDirCorruptError';
    this.file = file;
  }
}

export const snapshotFileName = (generation: number): string => `snapshot-${generation}.jobd`;
export const logFileName = (generation: number): string => `log-${generation}.jobd`;

const FILE_RE = /^(snapshot|log)-(\d+)\.jobd$/;

interface DirListing {
  snapshots: Map<number, string>;
  logs: Map<number, string>;
  temps: string[];
}

function listDir(dir: string): DirListing {
  const out: DirListing = { snapshots: new Map(), logs: new Map(), temps: [] };
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.jobd.tmp')) out.temps.push(name);
    const m = FILE_RE.exec(name);
    if (!m) continue;
    (m[1] === 'snapshot' ? out.snapshots : out.logs).set(Number(m[2]), name);
  }
  return out;
}

/** The log file that start-up will replay (for operators and tests); undefined in an empty directory. */
export function currentLogPath(dir: string): string | undefined {
  const { snapshots, logs } = listDir(dir);
  const gen = Math.max(0, ...snapshots.keys());
  return logs.has(gen) ? join(dir, logFileName(gen)) : undefined;
}

/** A DurableStore backed by a data directory, with a few read-outs for operators and tests. */
export interface FileStore extends DurableStore {
  load(): DurableLoadedState;
  /** Generation of the current snapshot/log pair (0 until the first compaction). */
  readonly generation: number;
  /** Current size of the log file, header included. */
  readonly logBytes: number;
  /** Size of the current snapshot file (0 before the first compaction). */
  readonly snapshotBytes: number;
}

export function openDurableStore(dir: string, options: DurableStoreOptions = {}): FileStore {
  const absDir = resolve(dir);
  mkdirSync(absDir, { recursive: true });
  const lock = acquireDirLock(absDir, options.log);
  try {
    return new FileDurableStore(absDir, lock, options);
  } catch (err) {
    lock.release();
    throw err;
  }
}

class FileDurableStore implements FileStore {
  readonly dir: string;
  private readonly lock: DirLock;
  private readonly fsyncMode: 'always' | 'never';
  private readonly compactMinBytes: number;
  private readonly compactRatio: number;
  private readonly bsonOptions: DeserializeOptions;
  private readonly log: (message: string) => void;
  private gen = 0;
  private fd: number | undefined;
  private logSize = 0;
  private snapSize = 0;
  private recovered: DurableLoadedState | undefined;
  /** Set when the files may no longer match what was acknowledged; every later write is refused. */
  private broken: Error | undefined;
  private closed = false;

  constructor(dir: string, lock: DirLock, options: DurableStoreOptions) {
    this.dir = dir;
    this.lock = lock;
    this.fsyncMode = options.fsync ?? 'never';
    this.compactMinBytes = options.compactMinBytes ?? DEFAULT_COMPACT_MIN_BYTES;
    this.compactRatio = options.compactRatio ?? DEFAULT_COMPACT_RATIO;
    this.bsonOptions = options.bsonOptions ?? {};
    this.log = options.log ?? (() => {});
    this.recovered = this.recover();
  }

  get generation(): number {
    return this.gen;
  }
  get logBytes(): number {
    return this.logSize;
  }
  get snapshotBytes(): number {
    return this.snapSize;
  }

  load(): DurableLoadedState {
    this.assertOpen();
    const first = this.recovered;
    this.recovered = undefined;
    if (first) return first;
    const snapshot = this.gen > 0 ? this.readSnapshot(this.gen) : [];
    const { records, scan } = this.readLog(this.gen);
    if (scan.problem) throw new DataDirCorruptError(this.path(logFileName(this.gen)), scan.problem);
    return { snapshot, records, droppedTornTail: false, generation: this.gen };
  }

  append(records: LogRecord[]): void {
    this.assertWritable();
    if (records.length === 0) return;
    this.recovered = undefined;
    const frame = encodeFrame(Tag.records, records as Document[]);
    const fd = this.fd as number;
    try {
      writeFully(fd, frame, this.logSize);
      if (this.fsyncMode === 'always') fdatasyncSync(fd);
    } catch (err) {
      // Never leave a partial frame for later appends to hide behind.
      try {
        ftruncateSync(fd, this.logSize);
      } catch {
        this.broken = new Error(
          `log ${this.path(logFileName(this.gen))} could not be repaired after a failed write`,
          { cause: err },
        );
      }
      throw err;
    }
    this.logSize += frame.length;
  }

  sync(): void {
    this.assertWritable();
    fdatasyncSync(this.fd as number);
  }

  shouldCompact(): boolean {
    return this.logSize - HEADER_BYTES > Math.max(this.compactMinBytes, this.compactRatio * this.snapSize);
  }

  compact(state: SnapshotCollection[]): void {
    this.assertWritable();
    this.recovered = undefined;
    const next = this.gen + 1;
    const snapPath = this.path(snapshotFileName(next));
    const snapTmp = `${snapPath}.tmp`;
    let snapBytes: number;
    try {
      snapBytes = writeSnapshot(snapTmp, next, state);
      renameSync(snapTmp, snapPath);
    } catch (err) {
      unlinkIfExists(snapTmp);
      throw err;
    }
    // From here on snapshot <next> is what start-up will use.
    let newFd: number;
    try {
      fsyncDir(this.dir);
      newFd = createLog(this.dir, next);
    } catch (err) {
      // Undo, so that start-up keeps replaying the current log, which the engine keeps appending to.
      try {
        unlinkSync(snapPath);
        fsyncDir(this.dir);
      } catch (undoErr) {
        this.broken = new Error(`compaction to generation ${next} failed half-way and could not be undone`, {
          cause: undoErr,
        });
      }
      throw err;
    }
    const oldGen = this.gen;
    closeSync(this.fd as number);
    this.fd = newFd;
    this.gen = next;
    this.logSize = HEADER_BYTES;
    this.snapSize = snapBytes;
    // The new generation is complete; leftovers of the old one are only garbage (start-up removes them too).
    try {
      unlinkIfExists(this.path(logFileName(oldGen)));
      if (oldGen > 0) unlinkIfExists(this.path(snapshotFileName(oldGen)));
      fsyncDir(this.dir);
    } catch (err) {
      this.log(
        `compaction to generation ${next} could not remove the old files yet: ${(err as Error).message}`,
      );
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.recovered = undefined;
    try {
      if (this.fd !== undefined) {
        if (this.fsyncMode === 'always') fsyncSync(this.fd);
        closeSync(this.fd);
      }
    } finally {
      this.fd = undefined;
      this.lock.release();
    }
  }

  private recover(): DurableLoadedState {
    const listing = listDir(this.dir);
    for (const t of listing.temps) unlinkIfExists(this.path(t));
    const gen = Math.max(0, ...listing.snapshots.keys());
    for (const [g, name] of listing.logs) {
      if (g > gen)
        throw new DataDirCorruptError(
          this.path(name),
          `there is no snapshot of generation ${g} for this log`,
        );
    }
    const snapshot = gen > 0 ? this.readSnapshot(gen) : [];

    const logPath = this.path(logFileName(gen));
    if (!listing.logs.has(gen)) {
      if (gen > 0) this.log(`completing an interrupted compaction: starting log ${logPath}`);
      closeSync(createLog(this.dir, gen));
    }
    const { records, scan } = this.readLog(gen);
    let tornTail: DurableLoadedState['tornTail'];
    if (scan.problem) {
      const droppedBytes = scan.fileSize - scan.goodEnd;
      tornTail = { file: logPath, offset: scan.goodEnd, droppedBytes, reason: scan.problem };
      this.log(
        `data directory ${this.dir}: dropped a torn or corrupt tail of ${droppedBytes} bytes at offset ${scan.goodEnd} ` +
          `of ${logPath} (${scan.problem}); a write cut short by a crash, never acknowledged`,
      );
    }

    this.fd = openSync(logPath, 'r+');
    if (scan.problem) {
      ftruncateSync(this.fd, scan.goodEnd);
      fsyncSync(this.fd);
    }
    this.logSize = scan.goodEnd;

    let removed = false;
    for (const [g, name] of listing.logs) {
      if (g < gen) {
        this.log(
          `completing an interrupted compaction: removing ${this.path(name)}, already part of snapshot ${gen}`,
        );
        unlinkIfExists(this.path(name));
        removed = true;
      }
    }
    for (const [g, name] of listing.snapshots) {
      if (g < gen) {
        unlinkIfExists(this.path(name));
        removed = true;
      }
    }
    if (removed || listing.temps.length > 0) fsyncDir(this.dir);

    this.gen = gen;
    this.snapSize = gen > 0 ? statSync(this.path(snapshotFileName(gen))).size : 0;
    const state: DurableLoadedState = {
      snapshot,
      records,
      droppedTornTail: tornTail !== undefined,
      generation: gen,
    };
    if (tornTail) state.tornTail = tornTail;
    return state;
  }

  private readLog(gen: number): { records: LogRecord[]; scan: ReturnType<typeof scanFrames> } {
    const path = this.path(logFileName(gen));
    checkHeader(path, FileKind.log, gen);
    const records: LogRecord[] = [];
    const scan = scanFrames(path, HEADER_BYTES, (tag, payload) => {
      if (tag !== Tag.records) throw new Error(`unexpected frame tag ${tag}`);
      const docs = decodeDocuments(payload, this.bsonOptions);
      for (const d of docs) records.push(d as LogRecord);
    });
    return { records, scan };
  }

  private readSnapshot(gen: number): SnapshotCollection[] {
    const path = this.path(snapshotFileName(gen));
    checkHeader(path, FileKind.snapshot, gen);
    const colls: SnapshotCollection[] = [];
    let current: SnapshotCollection | undefined;
    let docCount = 0;
    let end: Document | undefined;
    const scan = scanFrames(path, HEADER_BYTES, (tag, payload) => {
      if (end) throw new Error('data after the end frame');
      const docs = decodeDocuments(payload, this.bsonOptions);
      if (tag === Tag.collection) {
        const meta = docs[0] as Document;
        current = {
          db: meta.db as string,
          coll: meta.coll as string,
          indexes: meta.indexes as IndexSpecRecord[],
          docs: [],
        };
        if (meta.options !== undefined) current.options = meta.options as Document;
        if (meta.uuid !== undefined) current.uuid = meta.uuid as SnapshotCollection['uuid'];
        colls.push(current);
      } else if (tag === Tag.documents) {
        if (!current) throw new Error('documents before any collection');
        for (const d of docs) current.docs.push(d);
        docCount += docs.length;
      } else if (tag === Tag.end) {
        end = docs[0];
      } else {
        throw new Error(`unexpected frame tag ${tag}`);
      }
    });
    if (scan.problem) throw new DataDirCorruptError(path, `snapshot is damaged: ${scan.problem}`);
    if (!end) throw new DataDirCorruptError(path, 'snapshot is incomplete (no end frame)');
    if (Number(end.collections) !== colls.length || Number(end.documents) !== docCount) {
      throw new DataDirCorruptError(path, 'snapshot counts do not match its end frame');
    }
    return colls;
  }

  private path(name: string): string {
    return join(this.dir, name);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`durable store ${this.dir} is closed`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.broken) throw this.broken;
  }
}

function checkHeader(path: string, kind: FileKind, gen: number): void {
  const h = decodeHeader(readHeader(path), kind);
  if ('problem' in h) throw new DataDirCorruptError(path, h.problem);
  if (h.generation !== gen)
    throw new DataDirCorruptError(path, `header says generation ${h.generation}, file name says ${gen}`);
}

/** Writes, fsyncs and closes a complete snapshot file; returns its size. */
function writeSnapshot(path: string, gen: number, state: SnapshotCollection[]): number {
  const fd = openSync(path, 'w');
  try {
    let pos = 0;
    const put = (b: Buffer): void => {
      writeFully(fd, b, pos);
      pos += b.length;
    };
    put(encodeHeader(FileKind.snapshot, gen));
    let documents = 0;
    for (const c of state) {
      const meta: Document = { db: c.db, coll: c.coll, indexes: c.indexes };
      if (c.options !== undefined) meta.options = c.options;
      if (c.uuid !== undefined) meta.uuid = c.uuid;
      put(encodeFrame(Tag.collection, [meta]));
      // Documents in frames of about SNAPSHOT_FRAME_BYTES each.
      let batch: Buffer[] = [];
      let batchBytes = 0;
      for (const d of c.docs) {
        const bytes = serializeDocument(d);
        batch.push(bytes);
        batchBytes += bytes.length;
        if (batchBytes >= SNAPSHOT_FRAME_BYTES) {
          put(encodeFrameFromBytes(Tag.documents, batch));
          batch = [];
          batchBytes = 0;
        }
      }
      if (batch.length > 0) put(encodeFrameFromBytes(Tag.documents, batch));
      documents += c.docs.length;
    }
    put(encodeFrame(Tag.end, [{ collections: state.length, documents }]));
    fsyncSync(fd);
    return pos;
  } finally {
    closeSync(fd);
  }
}

/** Creates log-<gen> with its header via .tmp + rename, durably; returns an fd open for writing. */
function createLog(dir: string, gen: number): number {
  const path = join(dir, logFileName(gen));
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeFully(fd, encodeHeader(FileKind.log, gen), 0);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dir);
  return openSync(path, 'r+');
}

function unlinkIfExists(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
