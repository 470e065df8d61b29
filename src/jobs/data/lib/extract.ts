/**
 * file_extraction: unpacks a zip, tar, tar.gz or tar.zst into a data dir, safely. Entries go into a
 * temporary sibling of the target, which is renamed into place once complete: a crash never leaves half
 * an extraction where the target is, and the next run removes the crashed run's temporary.
 */
import { mkdir, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { cleanStaleTemps, fsyncDir, tempSibling } from '../../lib/atomic.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError, throwIfAborted } from '../../lib/errors.js';
import { throttle } from '../../lib/hash.js';
import { confine, isInside, recheck } from '../../lib/paths.js';
import {
  detectFormat,
  readLinkTarget,
  refusedZip,
  tarEntries,
  zipEntries,
  type ArchiveEntry,
  type ArchiveFormat,
} from './archiveReaders.js';
import type { DataEnv } from './env.js';
import { extractInput, type ExtractInput, type ExtractOptions } from './extractInput.js';
import { FileWriterThread } from './fileWriterThread.js';
import { SafeTree } from './safeTree.js';

export const DEFAULT_MAX_BYTES = 1024 ** 4; // 1 TiB
export const DEFAULT_MAX_ENTRIES = 1_000_000;
/** A zip of at least this many entries has its small files created on a thread of their own. */
export const THREAD_MIN_ENTRIES = 1000;

export { extractInput, type ExtractInput, type ExtractOptions } from './extractInput.js';

export interface ExtractResult {
  extract_dir: string;
  format: ArchiveFormat;
  entries: number;
  bytes: number;
}

/** The settings' limit is the operator's ceiling: a job may ask for less, never for more. */
function jobLimit(field: string, asked: number | undefined, key: string, ceiling: number): number {
  if (asked === undefined) return ceiling;
  if (asked > ceiling) {
    throw new DataInputError(
      `${field} = ${asked} is not allowed: must be at most ${ceiling} (the settings' data.extract.${key})`,
    );
  }
  return asked;
}

/** Validates its input itself (a call outside a job); a job type calls extractArchiveParsed. */
export async function extractArchive(
  input: ExtractInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ExtractResult> {
  return extractArchiveParsed(extractInput().parse(input), ctx, env);
}

/** extractArchive for an input its job type's schema parsed (the daemon or the handler did). */
export async function extractArchiveParsed(
  opts: ExtractOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ExtractResult> {
  const archiveField = opts.archive !== undefined ? 'archive' : 'zip_file';
  const archive = await confine((opts.archive ?? opts.zip_file)!, env.dataDirs, {
    field: archiveField,
    mustExist: true,
    kind: 'file',
  });
  const target = await confine(opts.extract_dir, env.dataDirs, { field: 'extract_dir', forWrite: true });
  const format = opts.format === 'auto' ? await detectFormat(archive.real) : opts.format;
  const limits = {
    maxBytes: jobLimit('max_bytes', opts.max_bytes, 'maxBytes', env.extract?.maxBytes ?? DEFAULT_MAX_BYTES),
    maxEntries: jobLimit(
      'max_entries',
      opts.max_entries,
      'maxEntries',
      env.extract?.maxEntries ?? DEFAULT_MAX_ENTRIES,
    ),
  };
  const existing = await nonEmptyDir(target.real);
  if (existing && opts.on_existing === 'fail') {
    throw new DataInputError(
      `extract_dir: "${opts.extract_dir}" exists and is not empty (on_existing: fail)`,
    );
  }
  if (existing && opts.on_existing === 'replace' && isInside(archive.real, target.real)) {
    throw new DataInputError(
      `extract_dir: "${opts.extract_dir}" holds the archive itself, so it cannot be replaced; use on_existing: "merge"`,
    );
  }

  await mkdir(dirname(target.real), { recursive: true });
  const stale = await cleanStaleTemps(target.real);
  if (stale.length) ctx.log("removed a crashed run's temporary extraction", { paths: stale });
  const tmp = tempSibling(target.real);
  await mkdir(tmp);
  const tree = new SafeTree(tmp, limits, ctx.signal);
  const archiveSize = (await stat(archive.real)).size;
  ctx.progress(0, `extracting ${format}`);
  let thread: FileWriterThread | null = null;
  try {
    if (format === 'zip') {
      const zip = await zipEntries(archive.real);
      // Creating a small file is mostly the kernel's work: on a second thread it overlaps with reading
      // and checking the next entries here. A thread left idle by an earlier extraction is reused.
      if (zip.count >= THREAD_MIN_ENTRIES) tree.useThread((thread = FileWriterThread.take()));
      const report = throttle(250, () =>
        ctx.progress((tree.entries / Math.max(1, zip.count)) * 99, `${tree.entries}/${zip.count} entries`),
      );
      for await (const entry of zip.entries) {
        throwIfAborted(ctx.signal, 'file_extraction');
        const pending = entry.data ? writeSmallZipFile(tree, entry) : writeEntry(tree, entry, true);
        if (pending) await pending;
        report();
      }
    } else {
      let read = 0;
      const report = throttle(250, () =>
        ctx.progress((read / Math.max(1, archiveSize)) * 99, `${tree.entries} entries, ${tree.bytes} bytes`),
      );
      const tar = tarEntries(archive.real, format, ctx, (n) => {
        read = n;
        report();
      });
      for await (const entry of tar.entries) {
        throwIfAborted(ctx.signal, 'file_extraction');
        await writeEntry(tree, entry, false);
      }
      await tar.done;
    }
    await tree.finalCheck(); // every file given to the thread is written
    const done = thread;
    thread = null;
    await done?.release();
    throwIfAborted(ctx.signal, 'file_extraction');
    await recheck(target, env.dataDirs);
    await place(tmp, target.real, existing ? opts.on_existing : 'replace');
  } catch (err) {
    await thread?.close(); // it has exited: nothing is created in tmp after this
    await rm(tmp, { recursive: true, force: true });
    throw asAbort(err, ctx.signal, 'file_extraction');
  }
  ctx.progress(100, `${tree.entries} entries, ${tree.bytes} bytes`);
  return { extract_dir: opts.extract_dir, format, entries: tree.entries, bytes: tree.bytes };
}

/**
 * A small zip file entry (bytes in memory): what `writeEntry` does for it, with a promise only when
 * the tree needs one (most entries need none: a promise chain per entry was a good part of their cost).
 */
function writeSmallZipFile(tree: SafeTree, e: ArchiveEntry): Promise<void> | undefined {
  try {
    const pending = tree.fileData(e.name, e.data!(), e.mode, e.mtime);
    return pending?.catch((err: unknown) => {
      throw refusedZip(err);
    });
  } catch (err) {
    throw refusedZip(err);
  }
}

async function writeEntry(tree: SafeTree, e: ArchiveEntry, zip: boolean): Promise<void> {
  switch (e.type) {
    case 'directory':
      return tree.directory(e.name);
    case 'file':
      try {
        return await tree.file(
          e.name,
          e.data ? e.data() : await e.content(),
          e.mode,
          e.mtime,
          e.declaredSize,
        );
      } catch (err) {
        throw zip ? refusedZip(err) : err;
      }
    case 'symlink':
      return tree.symlink(e.name, zip ? await readLinkTarget(await e.content()) : (e.linkname ?? ''));
    case 'link':
      return tree.hardlink(e.name, e.linkname ?? '');
    default:
      return tree.refuseType(e.name, e.otherType ?? 'unknown');
  }
}

async function nonEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length > 0;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return false;
    if (code === 'ENOTDIR') throw new DataInputError(`extract_dir: "${path}" exists and is not a directory`);
    throw err;
  }
}

/**
 * Puts the finished tree in place. A missing or empty target: one rename. Replace: the old tree is
 * renamed aside first, then removed. Merge: each top-level entry is renamed in (a crash mid-merge is
 * repaired by the re-run, which extracts and merges again).
 */
async function place(tmp: string, target: string, mode: 'replace' | 'merge' | 'fail'): Promise<void> {
  await rmdir(target).catch(() => {}); // an empty directory (or nothing) gives way to the rename
  const parent = dirname(target);
  if (mode === 'merge') {
    for (const name of await readdir(tmp)) {
      const dest = `${target}/${name}`;
      const st = await stat(dest).catch(() => null);
      if (st?.isDirectory()) await rm(dest, { recursive: true, force: true });
      await rename(`${tmp}/${name}`, dest);
    }
    await rm(tmp, { recursive: true, force: true });
    await fsyncDir(target);
    return;
  }
  try {
    await rename(tmp, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    const old = tempSibling(target);
    await rename(target, old);
    await rename(tmp, target);
    await rm(old, { recursive: true, force: true });
  }
  await fsyncDir(parent);
}
