/**
 * Start-up of a data directory (see persistence.ts for its files): pick the newest generation, finish
 * or discard a half-done compaction, read the snapshot and the log, and sort what cannot be read into
 * a torn tail of the log (dropped: a write cut short by a crash, never acknowledged) or damage
 * (refused, or repaired when asked: persistenceRepair.ts). Nothing is changed in the directory before
 * that decision, so a refused start leaves every data file as it was.
 */
import {
  closeSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import type { DeserializeOptions, Timestamp } from 'bson';
import type { LoadedState, LogRecord } from './persistenceTypes.js';
import {
  FileKind,
  HEADER_BYTES,
  Tag,
  decodeDocuments,
  encodeHeader,
  findIntactFrames,
  fsyncDir,
  scanFrames,
  writeFully,
  zeroesFrom,
  type ScanResult,
} from './persistenceFrames.js';
import {
  SNAPSHOT_TAGS,
  checkHeader,
  endFrame,
  readSnapshotFile,
  type SnapshotReading,
} from './persistenceSnapshot.js';
import { DataDirDamagedError, describeDamage, type Damage } from './persistenceErrors.js';
import { rewriteAsPrefix, setAside } from './persistenceRepair.js';

export const snapshotFileName = (generation: number): string => `snapshot-${generation}.jobd`;
export const logFileName = (generation: number): string => `log-${generation}.jobd`;

const FILE_RE = /^(snapshot|log)-(\d+)\.jobd$/;
const LOG_TAGS: ReadonlySet<number> = new Set([Tag.records]);

/** What load() found beyond the LoadedState contract. */
export interface DurableLoadedState extends LoadedState {
  generation: number;
  /** Set when a torn tail was dropped. */
  tornTail?: { file: string; offset: number; droppedBytes: number; reason: string };
  /** The damage a repair cut away at this start, each with where its file is kept. */
  repaired?: Damage[];
}

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

export interface Recovered {
  state: DurableLoadedState;
  generation: number;
  /** The current log, open for appending at logBytes. */
  fd: number;
  logBytes: number;
  snapshotBytes: number;
}

export interface RecoveryOptions {
  bsonOptions: DeserializeOptions;
  repair: boolean;
  log: (message: string) => void;
}

export function recoverDataDir(dir: string, opts: RecoveryOptions): Recovered {
  const path = (name: string): string => join(dir, name);
  const listing = listDir(dir);
  for (const t of listing.temps) unlinkIfExists(path(t));
  const gen = Math.max(0, ...listing.snapshots.keys());
  const damages: Damage[] = [];

  for (const [g, name] of listing.logs) {
    if (g > gen) damages.push(orphanLogDamage(path(name), g));
  }
  let snap: SnapshotReading | undefined;
  if (gen > 0) {
    const snapPath = path(snapshotFileName(gen));
    snap = readSnapshotFile(snapPath, gen, opts.bsonOptions);
    if (snap.damage) damages.push(snapshotDamage(snapPath, snap));
  }
  const logPath = path(logFileName(gen));
  const log = listing.logs.has(gen) ? readLogFile(logPath, gen, opts.bsonOptions) : undefined;
  if (log?.damage) damages.push(log.damage);

  // No data file has been changed up to here.
  if (damages.length > 0 && !opts.repair) throw new DataDirDamagedError(dir, damages);
  for (const d of damages) {
    d.keptAs = repairFile(d, snap, log);
    opts.log(
      `repaired data directory ${dir}: ${describeDamage(d)}. Started with what is before the damage; ` +
        `the whole damaged file is kept as ${d.keptAs}`,
    );
  }

  if (!log) {
    if (gen > 0) opts.log(`completing an interrupted compaction: starting log ${logPath}`);
    closeSync(createLog(dir, gen));
  }
  let tornTail: DurableLoadedState['tornTail'];
  let logBytes = HEADER_BYTES;
  const fd = openSync(logPath, 'r+');
  try {
    if (log) {
      const scan = log.scan;
      logBytes = log.damage && log.damage.offset < HEADER_BYTES ? HEADER_BYTES : scan.goodEnd;
      if (scan.problem && !log.damage) {
        const droppedBytes = scan.fileSize - scan.goodEnd;
        tornTail = { file: logPath, offset: scan.goodEnd, droppedBytes, reason: scan.problem };
        opts.log(
          `data directory ${dir}: dropped a torn tail of ${droppedBytes} bytes at offset ${scan.goodEnd} ` +
            `of ${logPath} (${scan.problem}); a write cut short by a crash, never acknowledged`,
        );
        ftruncateSync(fd, scan.goodEnd);
        fsyncSync(fd);
      }
    }

    // Older generations are garbage once this one stands; beside a repaired snapshot they are kept aside.
    const keepOld = snap?.damage !== undefined;
    const discard = (name: string): void => {
      if (keepOld) setAside(path(name), true);
      else unlinkIfExists(path(name));
    };
    let removed = false;
    for (const [g, name] of listing.logs) {
      if (g < gen) {
        opts.log(
          `completing an interrupted compaction: ${keepOld ? 'setting aside' : 'removing'} ${path(name)}, ` +
            `already part of snapshot ${gen}`,
        );
        discard(name);
        removed = true;
      }
    }
    for (const [g, name] of listing.snapshots) {
      if (g < gen) {
        discard(name);
        removed = true;
      }
    }
    if (removed || listing.temps.length > 0) fsyncDir(dir);
  } catch (err) {
    closeSync(fd);
    throw err;
  }

  const state: DurableLoadedState = {
    snapshot: snap?.collections ?? [],
    records: log?.records ?? [],
    droppedTornTail: tornTail !== undefined,
    generation: gen,
  };
  if (tornTail) state.tornTail = tornTail;
  if (damages.length > 0) state.repaired = damages;
  return {
    state,
    generation: gen,
    fd,
    logBytes,
    snapshotBytes: gen > 0 ? statSync(path(snapshotFileName(gen))).size : 0,
  };
}

/** Cuts one damaged file back to what is before its damage; returns where the original is kept. */
function repairFile(d: Damage, snap: SnapshotReading | undefined, log: LogReading | undefined): string {
  const generation = Number(/-(\d+)\.jobd$/.exec(d.file)?.[1]);
  if (d.what === 'orphan log') return setAside(d.file, true);
  if (d.what === 'snapshot' && snap) {
    const fresh = { kind: FileKind.snapshot, generation };
    // Damage after an intact end frame: the prefix is a whole snapshot already.
    if (snap.ended) return rewriteAsPrefix(d.file, snap.summary.bytes, fresh);
    const keep = d.offset < HEADER_BYTES ? 0 : snap.keptEnd;
    return rewriteAsPrefix(d.file, keep, fresh, endFrame(snap.summary.collections, snap.summary.documents));
  }
  const keep = log && d.offset >= HEADER_BYTES ? log.scan.goodEnd : 0;
  return rewriteAsPrefix(d.file, keep, { kind: FileKind.log, generation });
}

export interface LogReading {
  records: LogRecord[];
  scan: ScanResult;
  /** Set when the log is damaged, not merely torn at its end. */
  damage?: Damage;
}

/**
 * Reads a log up to its first bad frame, and tells a torn tail from damage: a torn tail is a last frame
 * the file ends inside of (or that reads as zeroes, or fails its checksum with only zeroes after it)
 * with no intact frame anywhere after it.
 */
export function readLogFile(path: string, gen: number, bsonOptions: DeserializeOptions): LogReading {
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
    const docs = decodeDocuments(payload, bsonOptions) as LogRecord[];
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

/** When a logged operation happened, for the records that carry a time. */
function operationTime(r: LogRecord): Date | undefined {
  if (r.op === 'clock') return new Date((r.ts as Timestamp).high * 1000);
  if (r.op === 'txn' && r.at instanceof Date) return r.at;
  return undefined;
}

function snapshotDamage(path: string, read: SnapshotReading): Damage {
  const damage = read.damage as { offset: number; reason: string };
  const stat = statSync(path);
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
    fileSize: stat.size,
    framesKept: read.summary.frames,
    framesAfter: after.count,
    documentsKept: read.summary.documents,
    lastGoodTime: stat.mtime,
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
export function createLog(dir: string, gen: number): number {
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

export function unlinkIfExists(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
