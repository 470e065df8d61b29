/**
 * Repairing a damaged data file: the file is rewritten as its intact prefix, and the whole original is
 * kept beside it as `<name>.damaged-<time>`, never deleted. Each step is crash-safe:
 *
 *   1. the prefix is written to `<name>.tmp` and fsynced        crash: the .tmp is removed at start-up
 *   2. the original gets a second name, `<name>.damaged-<time>`  crash: the damage is found again; one
 *      (a hard link, or a copy where links are not supported)     more kept copy, nothing lost
 *   3. `<name>.tmp` is renamed over `<name>`, directory fsynced  done
 */
import {
  closeSync,
  constants,
  copyFileSync,
  fsyncSync,
  linkSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { HEADER_BYTES, encodeHeader, fsyncDir, writeFully, type FileKind } from './persistenceFrames.js';

/**
 * Rewrites `path` as its first `keepBytes` bytes (a fresh header when the header itself is not kept)
 * followed by `trailer`; returns where the original is kept.
 */
export function rewriteAsPrefix(
  path: string,
  keepBytes: number,
  fresh: { kind: FileKind; generation: number },
  trailer?: Buffer,
): string {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    let size = keepBytes;
    if (keepBytes < HEADER_BYTES) {
      writeFully(fd, encodeHeader(fresh.kind, fresh.generation), 0);
      size = HEADER_BYTES;
    } else {
      copyPrefix(path, fd, keepBytes);
    }
    if (trailer) writeFully(fd, trailer, size);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const keptAs = setAside(path, false);
  renameSync(tmp, path);
  fsyncDir(dirname(path));
  return keptAs;
}

const COPY_CHUNK = 8 * 1024 * 1024;

/** Copies the first `n` bytes of `from` to the start of `to`. */
function copyPrefix(from: string, to: number, n: number): void {
  const src = openSync(from, 'r');
  const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, n));
  try {
    for (let at = 0; at < n;) {
      const got = readSync(src, buf, 0, Math.min(buf.length, n - at), at);
      if (got === 0) throw new Error(`${from} ended at offset ${at} while being copied`);
      writeFully(to, buf.subarray(0, got), at);
      at += got;
    }
  } finally {
    closeSync(src);
  }
}

/**
 * Gives `path` the name `<name>.damaged-<time>` (a unique one): moved when `move`, else kept under
 * both names. Returns the new name.
 */
export function setAside(path: string, move: boolean): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  for (let n = 0; ; n++) {
    const aside = `${path}.damaged-${stamp}${n ? `-${n}` : ''}`;
    try {
      if (move) renameWithoutReplacing(path, aside);
      else keepUnder(path, aside);
      fsyncDir(dirname(path));
      return aside;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || n > 100) throw err;
    }
  }
}

function keepUnder(path: string, aside: string): void {
  try {
    linkSync(path, aside);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EXDEV') throw err;
    copyFileSync(path, aside, constants.COPYFILE_EXCL);
    const fd = openSync(aside, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** rename(2) would replace an existing target; a set-aside file must never replace another. */
function renameWithoutReplacing(path: string, aside: string): void {
  keepUnder(path, aside);
  unlinkSync(path);
}
