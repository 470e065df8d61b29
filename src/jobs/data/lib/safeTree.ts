/**
 * Writes archive entries under one root without ever leaving it: names are checked (no absolute
 * paths, no `..`), nothing is written through a symlink, links must resolve inside the root, device
 * files and FIFOs are refused, and the bytes actually written (not what headers claim) are counted
 * against the limits. The root must be a new, empty directory that only this tree writes to (a
 * temporary sibling of the target).
 */
import { closeSync, createWriteStream, futimesSync, openSync, writeSync } from 'node:fs';
import { link, lstat, mkdir, readlink, symlink, unlink, utimes } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ArchiveRefusedError } from '../../lib/errors.js';
import { isInside } from '../../lib/paths.js';
import { BATCH_BYTES, type FileWriterThread } from './fileWriterThread.js';

export interface TreeLimits {
  maxBytes: number;
  maxEntries: number;
}

/** Checks an entry name and returns it relative and normalised ('' for the root itself). */
export function safeEntryName(raw: string): string {
  if (raw.includes('\0')) throw new ArchiveRefusedError(`entry "${raw}": the name contains a NUL byte`);
  const name = raw.replace(/\\/g, '/');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name)) {
    throw new ArchiveRefusedError(`entry "${raw}": absolute paths are refused`);
  }
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new ArchiveRefusedError(`entry "${raw}": ".." segments are refused`);
  return parts.join('/');
}

/** Entries up to this size are written from memory in one call. */
const SMALL_FILE = 1 << 20;
/**
 * Small files are written with synchronous calls, one after another, and the event loop gets a turn at
 * least this often (a cancel, a heartbeat, progress). A file's creation is CPU time in the kernel, not
 * a wait for the disk: written in parallel from the thread pool, the creations in one directory queue
 * on its lock (the waiters spinning), and each file costs four thread-pool round trips on top.
 */
const YIELD_MS = 20;

export class SafeTree {
  entries = 0;
  bytes = 0;
  private readonly dirs = new Set<string>(['']);
  private readonly symlinks: string[] = [];
  private lastYield = performance.now();
  /** Names of files and links written (directories are in `dirs`). */
  private readonly written = new Set<string>();
  /**
   * Where small files are created, if not here: a thread of their own. Whatever looks at what is on
   * disk (a name written twice, a link, the final check) first waits until it has created them all.
   */
  private thread: FileWriterThread | null = null;
  /** Per directory (relative): are its small files created by the thread? */
  private readonly byThread = new Map<string, boolean>();

  constructor(
    readonly root: string,
    private readonly limits: TreeLimits,
    /** Stops a large entry mid-write (a cancel need not wait for a whole big file). */
    private readonly signal?: AbortSignal,
  ) {}

  /** Small files from now on are created by `thread`, in order. */
  useThread(thread: FileWriterThread): void {
    this.thread = thread;
  }

  /** Every file given so far exists (the thread has created them, or failed). */
  async flush(): Promise<void> {
    await this.thread?.flush();
  }

  private count(name: string): void {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) {
      throw new ArchiveRefusedError(
        `the archive has more than ${this.limits.maxEntries} entries (max_entries); stopped at "${name}"`,
        { limit: 'max_entries', value: this.limits.maxEntries },
      );
    }
  }

  /** Makes sure every directory of `rel` exists and is a real directory (not a symlink). */
  async mkdirs(rel: string, entryName: string): Promise<void> {
    if (this.dirs.has(rel)) return;
    const parts = rel.split('/');
    let cur = '';
    for (const part of parts) {
      cur = cur ? `${cur}/${part}` : part;
      if (this.dirs.has(cur)) continue;
      if (this.written.has(cur)) await this.flush(); // a file or link of ours: see it on disk
      const abs = join(this.root, cur);
      const st = await lstat(abs).catch(() => null);
      if (!st) await mkdir(abs);
      else if (st.isSymbolicLink()) {
        throw new ArchiveRefusedError(`entry "${entryName}" would be written through the symlink "${cur}"`);
      } else if (!st.isDirectory()) {
        throw new ArchiveRefusedError(`entry "${entryName}": "${cur}" is a file, not a directory`);
      }
      this.dirs.add(cur);
    }
  }

  async directory(rawName: string): Promise<void> {
    const rel = safeEntryName(rawName);
    this.count(rawName);
    if (rel) await this.mkdirs(rel, rawName);
  }

  /** Makes room for a new entry at `rel`: removes a file or link there, refuses a directory. */
  private async clear(rel: string, rawName: string): Promise<string> {
    if (!rel) throw new ArchiveRefusedError(`entry "${rawName}": a file cannot replace the target directory`);
    const parent = posix.dirname(rel);
    if (parent !== '.') await this.mkdirs(parent, rawName);
    const abs = join(this.root, rel);
    if (this.dirs.has(rel))
      throw new ArchiveRefusedError(`entry "${rawName}": a directory of that name exists`);
    // The root is a fresh private directory written only by this tree: a name it never wrote is free,
    // and looking for it (an ENOENT per file) would cost as much as writing a small file.
    if (!this.written.has(rel)) {
      this.written.add(rel);
      return abs;
    }
    await this.flush();
    const st = await lstat(abs).catch(() => null);
    if (st?.isDirectory())
      throw new ArchiveRefusedError(`entry "${rawName}": a directory of that name exists`);
    if (st) await unlink(abs);
    return abs;
  }

  /**
   * A name that needs no look at the disk (its directory known, the name new): checked and reserved
   * at once, as `clear` would; null when `clear` must do the work (nothing reserved then).
   */
  private clearNow(rel: string, rawName: string): string | null {
    if (!rel) throw new ArchiveRefusedError(`entry "${rawName}": a file cannot replace the target directory`);
    const parent = posix.dirname(rel);
    if (parent !== '.' && !this.dirs.has(parent)) return null;
    if (this.dirs.has(rel))
      throw new ArchiveRefusedError(`entry "${rawName}": a directory of that name exists`);
    if (this.written.has(rel)) return null;
    this.written.add(rel);
    return join(this.root, rel);
  }

  /**
   * `file` for bytes already in memory, without a promise when none is needed: its directory exists,
   * the name is new, and the file is created here or queued for the thread at once (most small
   * entries of a zip). The checks, limits and writes are `file`'s.
   */
  fileData(rawName: string, data: Buffer, mode?: number, mtime?: Date): Promise<void> | undefined {
    const rel = safeEntryName(rawName);
    this.count(rawName);
    const abs = this.clearNow(rel, rawName);
    if (abs === null)
      return this.clear(rel, rawName).then((a) => this.fileDataAt(rawName, rel, a, data, mode, mtime));
    return this.fileDataAt(rawName, rel, abs, data, mode, mtime);
  }

  private fileDataAt(
    rawName: string,
    rel: string,
    abs: string,
    data: Buffer,
    mode?: number,
    mtime?: Date,
  ): Promise<void> | undefined {
    const fileMode = mode !== undefined ? (mode & 0o777) | 0o600 : 0o644;
    this.addBytes(data.length, rawName);
    return this.writeSmall(rel, abs, data, fileMode, mtime);
  }

  /**
   * Writes a file entry, from a stream or (small, already in memory) a buffer. `sizeHint` (the header's
   * size) only picks the way: small entries are read into memory and written in one call (a stream per
   * file costs more than the file); the limits always count the bytes actually read.
   */
  async file(
    rawName: string,
    content: Readable | Buffer,
    mode?: number,
    mtime?: Date,
    sizeHint?: number,
  ): Promise<void> {
    const rel = safeEntryName(rawName);
    this.count(rawName);
    const abs = await this.clear(rel, rawName);
    const fileMode = mode !== undefined ? (mode & 0o777) | 0o600 : 0o644;
    // O_EXCL ('wx'): never follows a symlink at the last component, and fails if something appeared there.
    if (Buffer.isBuffer(content)) {
      this.addBytes(content.length, rawName);
      return this.writeSmall(rel, abs, content, fileMode, mtime);
    }
    if (sizeHint !== undefined && sizeHint <= SMALL_FILE) {
      const chunks: Buffer[] = [];
      for await (const chunk of content as AsyncIterable<Buffer>) {
        this.addBytes(chunk.length, rawName);
        chunks.push(chunk);
      }
      return this.writeSmall(
        rel,
        abs,
        chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks),
        fileMode,
        mtime,
      );
    } else {
      await pipeline(
        content,
        this.counter(rawName),
        createWriteStream(abs, { flags: 'wx', mode: fileMode }),
        ...(this.signal ? [{ signal: this.signal }] : []),
      );
    }
    if (mtime && !Number.isNaN(mtime.getTime())) await utimes(abs, mtime, mtime);
  }

  /**
   * Written at once, with synchronous calls (see YIELD_MS), here or by the thread. With a thread, each
   * directory's files are created by one of the two, chosen at its first file: the thread if it has
   * nothing queued, else this one; so both create files, never two at once in one directory.
   */
  private writeSmall(
    rel: string,
    abs: string,
    data: Buffer,
    mode: number,
    mtime?: Date,
  ): Promise<void> | undefined {
    const thread = this.thread;
    let byThread = false;
    if (thread) {
      const dir = posix.dirname(rel);
      byThread = this.byThread.get(dir) ?? this.byThread.set(dir, !thread.busy).get(dir)!;
      if (byThread && data.length > BATCH_BYTES) {
        return thread.flush().then(() => {
          this.createHere(abs, data, mode, mtime);
          return this.yieldIfDue();
        });
      }
    }
    if (byThread) {
      const queued = thread!.add(abs, data, mode, mtime ? mtime.getTime() / 1000 : NaN);
      if (queued) return queued.then(() => this.yieldIfDue());
    } else this.createHere(abs, data, mode, mtime);
    return this.yieldIfDue();
  }

  /** Creates a small file on this thread, with synchronous calls. */
  private createHere(abs: string, data: Buffer, mode: number, mtime?: Date): void {
    this.thread?.kick(); // what it has queued goes to it now, not after these files
    const fd = openSync(abs, 'wx', mode);
    try {
      for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
      if (mtime && !Number.isNaN(mtime.getTime())) futimesSync(fd, mtime, mtime);
    } finally {
      closeSync(fd);
    }
  }

  /** Gives the event loop a turn if YIELD_MS have passed since the last. */
  private yieldIfDue(): Promise<void> | undefined {
    if (performance.now() - this.lastYield < YIELD_MS) return undefined;
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.lastYield = performance.now();
    });
  }

  private addBytes(n: number, rawName: string): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxBytes) {
      throw new ArchiveRefusedError(
        `the archive expands to more than ${this.limits.maxBytes} bytes (max_bytes); stopped in "${rawName}"`,
        { limit: 'max_bytes', value: this.limits.maxBytes },
      );
    }
  }

  /** Counts real bytes as they are written; stops the stream at the limit. */
  private counter(rawName: string): Transform {
    return new Transform({
      transform: (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) => {
        try {
          this.addBytes(chunk.length, rawName);
        } catch (err) {
          return cb(err as Error);
        }
        cb(null, chunk);
      },
    });
  }

  async symlink(rawName: string, target: string): Promise<void> {
    const rel = safeEntryName(rawName);
    this.count(rawName);
    if (target.startsWith('/') || target.includes('\0')) {
      throw new ArchiveRefusedError(`entry "${rawName}": symlink to "${target}" points outside the target`);
    }
    const abs = await this.clear(rel, rawName);
    await this.flush(); // the link is resolved against what is on disk
    await this.assertLinkInside(rawName, dirname(abs), target);
    await symlink(target, abs);
    this.symlinks.push(rel);
  }

  async hardlink(rawName: string, linkName: string): Promise<void> {
    const rel = safeEntryName(rawName);
    this.count(rawName);
    let targetRel: string;
    try {
      targetRel = safeEntryName(linkName);
    } catch {
      throw new ArchiveRefusedError(
        `entry "${rawName}": hard link to "${linkName}" points outside the target`,
      );
    }
    const parent = posix.dirname(targetRel);
    if (parent !== '.') await this.mkdirs(parent, rawName);
    const targetAbs = join(this.root, targetRel);
    await this.flush();
    const st = await lstat(targetAbs).catch(() => null);
    if (!st?.isFile()) {
      throw new ArchiveRefusedError(
        `entry "${rawName}": hard link to "${linkName}", which is not a file already extracted`,
      );
    }
    const abs = await this.clear(rel, rawName);
    await link(targetAbs, abs);
  }

  refuseType(rawName: string, type: string): never {
    throw new ArchiveRefusedError(`entry "${rawName}": ${type} entries are refused`);
  }

  /**
   * Resolves a link target the way the kernel would (following symlinks already in the tree) and
   * refuses one that leads outside the root.
   */
  private async assertLinkInside(rawName: string, fromDir: string, target: string): Promise<void> {
    const resolved = await resolveLike(fromDir, target, 0);
    if (resolved === null || !isInside(resolved, this.root)) {
      throw new ArchiveRefusedError(`entry "${rawName}": symlink to "${target}" points outside the target`);
    }
  }

  /** After every entry: each symlink must still resolve inside (later entries may change a chain). */
  async finalCheck(): Promise<void> {
    await this.flush();
    for (const rel of this.symlinks) {
      const abs = join(this.root, rel);
      const target = await readlink(abs);
      await this.assertLinkInside(rel, dirname(abs), target);
    }
  }
}

/**
 * Follows `target` from the real directory `dir` component by component, through existing symlinks
 * (absolute ones included). Returns the path it reaches, or null for a loop. A missing component
 * ends the walk; the rest must then hold no "..".
 */
async function resolveLike(dir: string, target: string, depth: number): Promise<string | null> {
  if (depth > 40) return null;
  let cur = target.startsWith('/') ? '/' : dir;
  const parts = target.split('/').filter((p) => p !== '' && p !== '.');
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (part === '..') {
      cur = dirname(cur);
      continue;
    }
    const next = join(cur, part);
    const st = await lstat(next).catch(() => null);
    if (!st) {
      const rest = parts.slice(i + 1);
      return rest.includes('..') ? null : join(next, ...rest);
    }
    if (st.isSymbolicLink()) {
      const r = await resolveLike(cur, await readlink(next), depth + 1);
      if (r === null) return null;
      cur = r;
    } else cur = next;
  }
  return cur;
}
