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
 * the log's end may be torn (dropped, as after a crash) or, rarely, damaged in the middle (see below).
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
 * file beside it (persistenceRecovery.ts, persistenceRepair.ts).
 */
import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { DeserializeOptions, Document } from 'bson';
import type { DurableStore, LogRecord, SnapshotCollection } from './persistenceTypes.js';
import { HEADER_BYTES, Tag, encodeFrame, fsyncDir, writeFully } from './persistenceFrames.js';
import { readSnapshotFile, verifySnapshotFile, writeSnapshotFile } from './persistenceSnapshot.js';
import { DataDirCorruptError } from './persistenceErrors.js';
import {
  createLog,
  logFileName,
  readLogFile,
  recoverDataDir,
  snapshotFileName,
  unlinkIfExists,
  type DurableLoadedState,
} from './persistenceRecovery.js';
import { acquireDirLock, type DirLock } from './persistenceLock.js';

export { DataDirLockedError, LOCK_FILE } from './persistenceLock.js';
export {
  DataDirCorruptError,
  DataDirDamagedError,
  describeDamage,
  type Damage,
} from './persistenceErrors.js';
export {
  currentLogPath,
  logFileName,
  snapshotFileName,
  type DurableLoadedState,
} from './persistenceRecovery.js';

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
    const r = recoverDataDir(dir, {
      bsonOptions: this.bsonOptions,
      repair: options.repair ?? false,
      log: this.log,
    });
    this.recovered = r.state;
    this.gen = r.generation;
    this.fd = r.fd;
    this.logSize = r.logBytes;
    this.snapSize = r.snapshotBytes;
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
    const log = readLogFile(this.path(logFileName(this.gen)), this.gen, this.bsonOptions);
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
