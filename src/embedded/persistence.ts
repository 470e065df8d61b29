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
 *   1. write snapshot-<G+1>.jobd.tmp, fsync, read it  crash: the .tmp is deleted at start-up; G stands
 *      back and check it against what was written      mismatch: the .tmp is deleted; G stands
 *   2. rename it to snapshot-<G+1>.jobd, fsync dir  crash: G+1 stands; log-<G> is stale (its records are
 *                                                   inside the snapshot) and is deleted, never replayed
 *   3. write log-<G+1>.jobd via .tmp + rename        crash before: start-up creates the empty log-<G+1>
 *   4. delete log-<G> and snapshot-<G>               crash before: start-up deletes them
 * Start-up always picks the highest snapshot generation and replays only the log of that same generation.
 *
 * Damage: a torn tail of the log (its last frame cut short by a crash: the file ends inside it, or it
 * reads as zeroes, and no intact frame follows) is dropped; that write was never acknowledged. Anything
 * else that cannot be read (a bad checksum with data after it, a frame that does not decode, a bad
 * header, a log without its snapshot) is damage: start-up refuses with DataDirDamagedError and changes
 * nothing, unless opened with `repair`, which keeps everything before the damage and the whole damaged
 * file beside it (persistenceRepair.ts).
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
import type { DeserializeOptions, Document, Timestamp } from 'bson';
import type { DurableStore, LoadedState, LogRecord, SnapshotCollection } from './persistenceTypes.js';
import {
  FileKind,
  HEADER_BYTES,
  Tag,
  decodeDocuments,
  encodeFrame,
  encodeHeader,
  findIntactFrames,
  fsyncDir,
  scanFrames,
  writeFully,
  zeroesFrom,
  type ScanResult,
} from './persistenceFrames.js';
import {
  checkHeader,
  endFrame,
  readSnapshotFile,
  verifySnapshotFile,
  writeSnapshotFile,
  SNAPSHOT_TAGS,
  type SnapshotReading,
} from './persistenceSnapshot.js';
import {
  DataDirCorruptError,
  DataDirDamagedError,
  describeDamage,
  type Damage,
} from './persistenceErrors.js';
import { rewriteAsPrefix, setAside } from './persistenceRepair.js';
import { acquireDirLock, type DirLock } from './persistenceLock.js';

export { DataDirLockedError, LOCK_FILE } from './persistenceLock.js';
export {
  DataDirCorruptError,
  DataDirDamagedError,
  describeDamage,
  type Damage,
} from './persistenceErrors.js';

export interface DurableStoreOptions {
  /** 'never' (default): survives process crashes. 'always': fdatasync per append, survives power loss. */
  fsync?: 'always' | 'never';
  /** shouldCompact() once the log exceeds max(compactMinBytes, compactRatio × snapshot size). */
  compactMinBytes?: number;
  compactRatio?: number;
  /** How documents are decoded at load; pass the options the engine decodes wire messages with. */
  bsonOptions?: DeserializeOptions;
  /**
   * A damaged file is cut back to what is before its damage, the whole original kept beside it as
   * `<name>.damaged-<time>`. Without it, a damaged data directory is refused (DataDirDamagedError).
   */
  repair?: boolean;
  /** Receives one line for each notable recovery action (a dropped torn tail, a finished crashed compaction, a repair). */
  log?: (message: string) => void;
}

export const DEFAULT_COMPACT_MIN_BYTES = 64 * 1024 * 1024;
export const DEFAULT_COMPACT_RATIO = 2;
const LOG_TAGS: ReadonlySet<number> = new Set([Tag.records]);

/** What load() found beyond the LoadedState contract. */
export interface DurableLoadedState extends LoadedState {
  generation: number;
  /** Set when a torn tail was dropped. */
  tornTail?: { file: string; offset: number; droppedBytes: number; reason: string };
  /** The damage a repair cut away at this start, each with where its file is kept. */
  repaired?: Damage[];
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
  private readonly repair: boolean;
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
    this.repair = options.repair ?? false;
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
    let snapshot: SnapshotCollection[] = [];
    if (this.gen > 0) {
      const path = this.path(snapshotFileName(this.gen));
      const read = readSnapshotFile(path, this.gen, this.bsonOptions);
      if (read.damage) throw new DataDirCorruptError(path, `snapshot is damaged: ${read.damage.reason}`);
      snapshot = read.collections;
    }
    const log = this.readLog(this.gen);
    if (log.scan.problem) throw new DataDirCorruptError(this.path(logFileName(this.gen)), log.scan.problem);
    return { snapshot, records: log.records, droppedTornTail: false, generation: this.gen };
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
      const written = writeSnapshotFile(snapTmp, next, state);
      // Only a snapshot proven to read back may replace the current generation.
      verifySnapshotFile(snapTmp, next, written, this.bsonOptions);
      snapBytes = written.bytes;
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
        unlinkIfExists(this.path(logFileName(next)));
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
    const damages: Damage[] = [];

    for (const [g, name] of listing.logs) {
      if (g > gen) damages.push(orphanLogDamage(this.path(name), g));
    }
    let snap: SnapshotReading | undefined;
    if (gen > 0) {
      const snapPath = this.path(snapshotFileName(gen));
      snap = readSnapshotFile(snapPath, gen, this.bsonOptions);
      if (snap.damage) damages.push(snapshotDamage(snapPath, snap));
    }
    const logPath = this.path(logFileName(gen));
    const log = listing.logs.has(gen) ? this.readLog(gen) : undefined;
    if (log?.damage) damages.push(log.damage);

    // Nothing in the directory has been changed up to here.
    if (damages.length > 0 && !this.repair) throw new DataDirDamagedError(this.dir, damages);
    for (const d of damages) {
      d.keptAs = this.repairFile(d, snap, log);
      this.log(
        `repaired data directory ${this.dir}: ${describeDamage(d)}. Started with what is before the damage; ` +
          `the whole damaged file is kept as ${d.keptAs}`,
      );
    }

    if (!log) {
      if (gen > 0) this.log(`completing an interrupted compaction: starting log ${logPath}`);
      closeSync(createLog(this.dir, gen));
    }
    const scan = log?.scan;
    let tornTail: DurableLoadedState['tornTail'];
    let logSize = HEADER_BYTES;
    this.fd = openSync(logPath, 'r+');
    if (log && scan) {
      logSize = log.damage && log.damage.offset < HEADER_BYTES ? HEADER_BYTES : scan.goodEnd;
      if (scan.problem && !log.damage) {
        const droppedBytes = scan.fileSize - scan.goodEnd;
        tornTail = { file: logPath, offset: scan.goodEnd, droppedBytes, reason: scan.problem };
        this.log(
          `data directory ${this.dir}: dropped a torn tail of ${droppedBytes} bytes at offset ${scan.goodEnd} ` +
            `of ${logPath} (${scan.problem}); a write cut short by a crash, never acknowledged`,
        );
        ftruncateSync(this.fd, scan.goodEnd);
        fsyncSync(this.fd);
      }
    }
    this.logSize = logSize;

    // Older generations are garbage once this one stands; after a repaired snapshot they are kept aside.
    const keepOld = snap?.damage !== undefined;
    let removed = false;
    for (const [g, name] of listing.logs) {
      if (g < gen) {
        this.log(
          `completing an interrupted compaction: ${keepOld ? 'setting aside' : 'removing'} ${this.path(name)}, already part of snapshot ${gen}`,
        );
        this.discard(name, keepOld);
        removed = true;
      }
    }
    for (const [g, name] of listing.snapshots) {
      if (g < gen) {
        this.discard(name, keepOld);
        removed = true;
      }
    }
    if (removed || listing.temps.length > 0) fsyncDir(this.dir);

    this.gen = gen;
    this.snapSize = gen > 0 ? statSync(this.path(snapshotFileName(gen))).size : 0;
    const state: DurableLoadedState = {
      snapshot: snap?.collections ?? [],
      records: log?.records ?? [],
      droppedTornTail: tornTail !== undefined,
      generation: gen,
    };
    if (tornTail) state.tornTail = tornTail;
    if (damages.length > 0) state.repaired = damages;
    return state;
  }

  /** Cuts one damaged file back to what is before its damage; returns where the original is kept. */
  private repairFile(d: Damage, snap: SnapshotReading | undefined, log: LogReading | undefined): string {
    if (d.what === 'orphan log') return setAside(d.file, true);
    if (d.what === 'snapshot' && snap) {
      const gen = this.genOf(d.file);
      if (snap.ended)
        return rewriteAsPrefix(d.file, snap.summary.bytes, { kind: FileKind.snapshot, generation: gen });
      const trailer = endFrame(snap.summary.collections, snap.summary.documents);
      const keep = d.offset < HEADER_BYTES ? 0 : snap.keptEnd;
      return rewriteAsPrefix(d.file, keep, { kind: FileKind.snapshot, generation: gen }, trailer);
    }
    const keep = log && d.offset >= HEADER_BYTES ? log.scan.goodEnd : 0;
    return rewriteAsPrefix(d.file, keep, { kind: FileKind.log, generation: this.genOf(d.file) });
  }

  private genOf(file: string): number {
    return Number(/-(\d+)\.jobd$/.exec(file)?.[1]);
  }

  private discard(name: string, keep: boolean): void {
    if (keep) setAside(this.path(name), true);
    else unlinkIfExists(this.path(name));
  }

  /** Reads the log of `gen` up to its first bad frame, and tells a torn tail from damage. */
  private readLog(gen: number): LogReading {
    const path = this.path(logFileName(gen));
    const records: LogRecord[] = [];
    const headerProblem = checkHeader(path, FileKind.log, gen);
    if (headerProblem) {
      const fileSize = statSync(path).size;
      return {
        records,
        scan: { goodEnd: 0, fileSize, frames: 0, problem: headerProblem },
        damage: {
          file: path,
          what: 'log',
          offset: 0,
          reason: `bad header: ${headerProblem}`,
          fileSize,
          framesKept: 0,
          framesAfter: findIntactFrames(path, 0, LOG_TAGS).count,
        },
      };
    }
    let lastTime: Date | undefined;
    const scan = scanFrames(path, HEADER_BYTES, (tag, payload) => {
      if (tag !== Tag.records) throw new Error(`unexpected frame tag ${tag}`);
      const docs = decodeDocuments(payload, this.bsonOptions) as LogRecord[];
      for (const r of docs) {
        records.push(r);
        lastTime = operationTime(r) ?? lastTime;
      }
    });
    const reading: LogReading = { records, scan };
    if (!scan.problem) return reading;
    const after = findIntactFrames(path, scan.goodEnd + 1, LOG_TAGS);
    const torn =
      !scan.unreadable &&
      after.count === 0 &&
      (scan.badFrameEnd === undefined || zeroesFrom(path, scan.badFrameEnd));
    if (torn) return reading;
    reading.damage = {
      file: path,
      what: 'log',
      offset: scan.goodEnd,
      reason: scan.problem,
      fileSize: scan.fileSize,
      framesKept: scan.frames,
      framesAfter: after.count,
      ...(lastTime ? { lastGoodTime: lastTime } : {}),
    };
    return reading;
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

interface LogReading {
  records: LogRecord[];
  scan: ScanResult;
  /** Set when the log is damaged, not merely torn at its end. */
  damage?: Damage;
}

/** When a logged operation happened, for the records that carry a time. */
function operationTime(r: LogRecord): Date | undefined {
  if (r.op === 'clock') return new Date((r.ts as Timestamp).high * 1000);
  if (r.op === 'txn' && r.at instanceof Date) return r.at;
  return undefined;
}

function snapshotDamage(path: string, read: SnapshotReading): Damage {
  const damage = read.damage as { offset: number; reason: string };
  const fileSize = statSync(path).size;
  let total: number | undefined;
  // Frames after the damage; the end frame among them still tells how many documents there were.
  const after = findIntactFrames(path, damage.offset + 1, SNAPSHOT_TAGS, (tag, payload) => {
    if (tag !== Tag.end) return;
    try {
      const n = Number(decodeDocuments(payload, {})[0]?.documents);
      if (Number.isSafeInteger(n)) total = n;
    } catch {
      // an end frame that does not decode tells nothing
    }
  });
  const d: Damage = {
    file: path,
    what: 'snapshot',
    offset: damage.offset,
    reason: damage.offset === 0 ? `bad header: ${damage.reason}` : damage.reason,
    fileSize,
    framesKept: read.summary.frames,
    framesAfter: after.count,
    documentsKept: read.summary.documents,
    lastGoodTime: statSync(path).mtime,
  };
  if (total !== undefined && total >= read.summary.documents) d.documentsTotal = total;
  return d;
}

function orphanLogDamage(path: string, gen: number): Damage {
  return {
    file: path,
    what: 'orphan log',
    offset: 0,
    reason: `there is no snapshot of generation ${gen} for this log`,
    fileSize: statSync(path).size,
    framesKept: 0,
    framesAfter: findIntactFrames(path, HEADER_BYTES, LOG_TAGS).count,
  };
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
