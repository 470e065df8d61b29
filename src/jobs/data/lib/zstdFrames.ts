/**
 * A tar.zst whose big files zstd reads itself, straight from the page cache. `tar | zstd` copies every
 * byte four times (tar reads the file, writes the pipe; zstd reads the pipe, then buffers it): measured
 * on a 1 GiB tree of 16 MiB files, the pipe was a quarter of all the CPU time, about 0.9 of 3.3 CPU-s,
 * on cores zstd's threads needed.
 *
 * Here jobd writes the tar stream's own bytes (headers, padding, small files, the end blocks) into small
 * segment files, and zstd gets the list: segment, big file, segment, big file, ..., segment. zstd
 * compresses each input into a frame of its own and writes them one after another; a zstd stream of
 * several frames decompresses to their concatenation (RFC 8878, section 3.1), which is the tar stream
 * GNU tar would write. Every zstd decoder (zstd -d, tar --zstd, libzstd) reads it.
 *
 * A big file that changes while zstd reads it (GNU tar's "file changed as we read it"): after zstd exits,
 * or fails, each big file's size, inode, mtime and ctime are compared with the listing; any change fails
 * the run with JOBD_SOURCE_CHANGED (retryable), and nothing is renamed into place.
 *
 * The segments are written, and the big files checked, with synchronous calls: a few hundred small
 * system calls in a row, each of which, awaited, costs a round trip through libuv's thread pool and a
 * wake-up of this thread that, on a busy machine, waits for a core. On a 2-core machine at load 9 to 20,
 * writing 65 segments that way took 70 to 720 ms before zstd could start (45 to 150 ms synchronously),
 * and the checks after zstd exited up to 180 ms. The event loop yields between segments every
 * SEGMENT_MAX bytes, so the small files' reads do not hold it long.
 */
import {
  closeSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readlinkSync,
  readSync,
  writeFileSync,
} from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { CoreContext } from '../../lib/context.js';
import { DataJobError } from '../../lib/errors.js';
import { startTool } from '../../lib/tool.js';
import { ZSTD } from '../../lib/toolTable.js';
import { BLOCK, gnuHeader, padding, RECORD, storableMtime, type HeaderEntry } from './tarHeader.js';
import { wholeSeconds, type TreeEntry } from './tarPack.js';

/** A file this big is read by zstd itself; smaller ones are copied into the segments. */
const DIRECT_MIN = 1 << 20;
/** At most this many small files and bytes in them (the segments are written before zstd starts). */
const SMALL_MAX_FILES = 1000;
const SMALL_MAX_BYTES = 64 << 20;
/** A segment is written out once it holds this much (small files in a row). */
const SEGMENT_MAX = 8 << 20;
/** How often progress is read from zstd's I/O counters. */
const PROGRESS_MS = 250;

const isDirect = (e: TreeEntry): boolean =>
  e.type === 'file' && e.size >= DIRECT_MIN && !e.abs.includes('\n');

/**
 * Whether a tree is worth packing this way: at least 90% of its bytes in big files (the small ones pass
 * through this process), not many small files, and times tar can store. Otherwise GNU tar packs it.
 */
export function framesPay(entries: TreeEntry[]): boolean {
  let direct = 0;
  let total = 0;
  let small = 0;
  for (const e of entries) {
    if (!storableMtime(e.mtimeSec)) return false;
    if (e.type !== 'file') continue;
    total += e.size;
    if (isDirect(e)) direct += e.size;
    else small++;
  }
  const rest = total - direct;
  return direct > 0 && rest <= total * 0.1 && rest <= SMALL_MAX_BYTES && small <= SMALL_MAX_FILES;
}

/**
 * Packs `entries` (from listTree) under `basename(root)/` into zstd with `zstdArgs`, writing `outFd`.
 * `segDir` must not exist; it holds the segments and is removed at the end. `onExited` is called once
 * zstd has exited with success, before the checks: the output is complete then, and whoever follows it
 * (hashAndSyncWhileWritten) can finish beside them. The returned promise still settles last, and a
 * failed check rejects it.
 */
export async function packFramesIntoZstd(
  root: string,
  entries: TreeEntry[],
  zstdArgs: string[],
  outFd: number,
  segDir: string,
  onBytes: (n: number) => void,
  ctx: CoreContext,
  killGraceMs?: number,
  onExited?: () => void,
): Promise<void> {
  mkdirSync(segDir);
  try {
    const { inputs, tarBytes } = await writeSegments(root, entries, segDir, ctx.signal);
    const list = join(segDir, 'inputs');
    writeFileSync(list, `${inputs.join('\n')}\n`);
    const zstd = startTool(
      {
        tool: ZSTD,
        args: [...zstdArgs, '--filelist', list],
        stdin: 'ignore',
        stdout: outFd,
        ...(killGraceMs !== undefined ? { killGraceMs } : {}),
      },
      ctx,
    );
    const timer = setInterval(
      () => void readChars(zstd.pid).then((n) => n && onBytes(Math.min(n, tarBytes))),
      PROGRESS_MS,
    );
    try {
      await zstd.done;
    } catch (err) {
      // zstd fails on a file whose size moved while it read it: say so, and retry.
      if (!ctx.signal.aborted) for (const e of entries) if (isDirect(e)) unchanged(e);
      throw err;
    } finally {
      clearInterval(timer);
    }
    onExited?.();
    onBytes(tarBytes);
    for (const e of entries) if (isDirect(e)) unchanged(e);
  } finally {
    await rm(segDir, { recursive: true, force: true });
  }
}

/** Writes the segments; returns zstd's inputs in order and the tar stream's length. */
async function writeSegments(
  root: string,
  entries: TreeEntry[],
  segDir: string,
  signal: AbortSignal,
): Promise<{ inputs: string[]; tarBytes: number }> {
  const prefix = basename(root);
  const inputs: string[] = [];
  let parts: Buffer[] = [];
  let held = 0;
  let tarBytes = 0;
  const push = (b: Buffer): void => void (parts.push(b), (held += b.length), (tarBytes += b.length));
  let sinceYield = 0;
  const flush = async (): Promise<void> => {
    const path = join(segDir, String(inputs.length).padStart(7, '0'));
    writeFileSync(path, Buffer.concat(parts), { flag: 'wx' });
    inputs.push(path);
    sinceYield += held;
    parts = [];
    held = 0;
    if (sinceYield >= SEGMENT_MAX) {
      sinceYield = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
      signal.throwIfAborted();
    }
  };
  const rootSt = lstatSync(root, { bigint: true });
  push(
    gnuHeader({
      name: `${prefix}/`,
      type: 'directory',
      mode: Number(rootSt.mode),
      size: 0,
      mtime: wholeSeconds(rootSt.mtimeNs),
    }),
  );
  const seen = new Map<string, string>();
  for (const e of entries) {
    signal.throwIfAborted();
    const name = `${prefix}/${e.rel}`;
    const base = { mode: e.mode, size: 0, mtime: e.mtimeSec } satisfies Partial<HeaderEntry>;
    if (e.type === 'directory') push(gnuHeader({ ...base, name: `${name}/`, type: 'directory' }));
    else if (e.type === 'symlink')
      push(gnuHeader({ ...base, name, type: 'symlink', linkname: readlinkSync(e.abs) }));
    else if (e.nlink > 1 && seen.has(e.devIno!)) {
      push(gnuHeader({ ...base, name, type: 'link', linkname: seen.get(e.devIno!)! }));
    } else {
      if (e.nlink > 1) seen.set(e.devIno!, name);
      push(gnuHeader({ ...base, name, type: 'file', size: e.size }));
      if (isDirect(e)) {
        await flush();
        inputs.push(e.abs);
        tarBytes += e.size;
      } else {
        push(readExactly(e));
      }
      push(Buffer.alloc(padding(e.size)));
    }
    if (held >= SEGMENT_MAX) await flush();
  }
  const end = 2 * BLOCK;
  push(Buffer.alloc(end + ((RECORD - ((tarBytes + end) % RECORD)) % RECORD)));
  await flush();
  return { inputs, tarBytes };
}

function changed(e: TreeEntry): DataJobError {
  return new DataJobError('SourceChangedError', `"${e.rel}" changed while it was packed`, {
    retryable: true,
    code: 'JOBD_SOURCE_CHANGED',
  });
}

/** A small file's bytes, exactly the size listed (a file that changed since fails the run). */
function readExactly(e: TreeEntry): Buffer {
  const fd = openSync(e.abs, 'r');
  try {
    if (fstatSync(fd).size !== e.size) throw changed(e);
    const buf = Buffer.allocUnsafe(e.size);
    let got = 0;
    while (got < e.size) {
      const n = readSync(fd, buf, got, e.size - got, got);
      if (n === 0) throw changed(e);
      got += n;
    }
    // One more byte would mean the file grew after the fstat.
    if (readSync(fd, Buffer.allocUnsafe(1), 0, 1, got) !== 0) throw changed(e);
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Fails if a big file is not the one listed, or was written since (its ctime moves on any write). */
function unchanged(e: TreeEntry): void {
  let st;
  try {
    st = lstatSync(e.abs, { bigint: true });
  } catch {
    throw changed(e);
  }
  if (
    !st.isFile() ||
    `${st.dev}:${st.ino}` !== e.devIno ||
    Number(st.size) !== e.size ||
    wholeSeconds(st.mtimeNs) !== e.mtimeSec ||
    st.ctimeNs !== e.ctimeNs
  ) {
    throw changed(e);
  }
}

/** Bytes a process has read (Linux's /proc/<pid>/io), or 0 when that is not readable. */
async function readChars(pid: number): Promise<number> {
  try {
    const m = /^rchar: (\d+)$/m.exec(await readFile(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
