/**
 * Packs a directory into a tar stream (tar-stream), in sorted order: directories, regular files
 * (read exactly the size seen, so a file that changes meanwhile fails the run rather than the archive),
 * symlinks, and hard links stored once. Sockets, FIFOs and devices are skipped and logged.
 */
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tarStream, { type Pack } from 'tar-stream';
import type { CoreContext } from '../../lib/context.js';
import { DataJobError } from '../../lib/errors.js';

export interface TreeEntry {
  rel: string;
  abs: string;
  type: 'directory' | 'file' | 'symlink';
  size: number;
  mode: number;
  /** As fs.Stats gives it: rounded to the nearest millisecond (manifests store this). */
  mtime: Date;
  /**
   * Whole seconds, exactly (the floor of the nanosecond time), as tar stores it. Not derived from
   * `mtime`: its rounding puts a time in a second's last half-millisecond into the next second.
   */
  mtimeSec: number;
  /** Status change time (ns): a file rewritten in place changes it, whatever its size and mtime. */
  ctimeNs: bigint;
  devIno?: string;
  nlink: number;
}

const NS_PER_S = 1_000_000_000n;

/** The whole seconds of a nanosecond time: its floor, also before 1970. */
export function wholeSeconds(ns: bigint): number {
  const s = ns / NS_PER_S;
  return Number(ns < 0n && s * NS_PER_S !== ns ? s - 1n : s);
}

/** The Date fs.Stats makes of a nanosecond time (milliseconds, rounded to the nearest). */
function statsDate(ns: bigint): Date {
  const s = wholeSeconds(ns);
  return new Date(Math.round(s * 1e3 + Number(ns - BigInt(s) * NS_PER_S) / 1e6));
}

/** Lists a tree (lstat, no following of symlinks), sorted, the root excluded. */
export async function listTree(root: string, ctx: CoreContext): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  async function walk(dir: string, rel: string): Promise<void> {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const abs = join(dir, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = await lstat(abs, { bigint: true });
      const common = {
        rel: r,
        abs,
        size: Number(st.size),
        mode: Number(st.mode) & 0o7777,
        mtime: statsDate(st.mtimeNs),
        mtimeSec: wholeSeconds(st.mtimeNs),
        ctimeNs: st.ctimeNs,
        nlink: Number(st.nlink),
      };
      if (st.isDirectory()) {
        out.push({ ...common, type: 'directory', size: 0 });
        await walk(abs, r);
      } else if (st.isFile()) out.push({ ...common, type: 'file', devIno: `${st.dev}:${st.ino}` });
      else if (st.isSymbolicLink()) out.push({ ...common, type: 'symlink', size: 0 });
      else ctx.log('skipped: not a file, directory or symlink', { path: r });
    }
  }
  await walk(root, '');
  return out;
}

/**
 * Writes `entries` (from listTree) into a new tar stream under `prefix/`. The returned pack is the
 * readable end; `done` settles once every entry was added (or on the first error, which also
 * destroys the pack).
 */
export function packTree(
  root: string,
  entries: TreeEntry[],
  onBytes: (n: number) => void,
  signal: AbortSignal,
): { pack: Pack; done: Promise<void> } {
  const pack = tarStream.pack();
  const prefix = basename(root);
  const done = (async () => {
    const rootSt = await lstat(root, { bigint: true });
    await add(pack, {
      name: prefix,
      type: 'directory',
      mode: Number(rootSt.mode) & 0o7777,
      mtime: new Date(wholeSeconds(rootSt.mtimeNs) * 1000),
    });
    const seen = new Map<string, string>();
    let bytes = 0;
    for (const e of entries) {
      signal.throwIfAborted();
      const name = `${prefix}/${e.rel}`;
      const base = { name, mode: e.mode, mtime: new Date(e.mtimeSec * 1000) };
      if (e.type === 'directory') await add(pack, { ...base, type: 'directory' });
      else if (e.type === 'symlink')
        await add(pack, { ...base, type: 'symlink', linkname: await readlink(e.abs) });
      else if (e.nlink > 1 && seen.has(e.devIno!)) {
        await add(pack, { ...base, type: 'link', linkname: seen.get(e.devIno!)! });
      } else {
        if (e.nlink > 1) seen.set(e.devIno!, name);
        if (e.size > 0) {
          const sink = pack.entry({ ...base, type: 'file', size: e.size });
          await pipeline(
            createReadStream(e.abs, { start: 0, end: e.size - 1, highWaterMark: 1 << 20 }),
            sink,
            {
              signal,
            },
          ).catch((err: unknown) => {
            throw new DataJobError(
              'SourceChangedError',
              `"${e.rel}" could not be packed (did it change while packing?): ${(err as Error).message}`,
              {
                retryable: true,
                code: 'JOBD_SOURCE_CHANGED',
                cause: err,
              },
            );
          });
        } else
          await new Promise<void>((res, rej) =>
            pack.entry({ ...base, type: 'file' }, Buffer.alloc(0), (err) => (err ? rej(err) : res())),
          );
        bytes += e.size;
        onBytes(bytes);
      }
    }
    pack.finalize();
  })();
  done.catch((err: unknown) => pack.destroy(err as Error));
  return { pack, done };
}

function add(pack: Pack, header: Parameters<Pack['entry']>[0]): Promise<void> {
  return new Promise((res, rej) => pack.entry(header, (err?: Error | null) => (err ? rej(err) : res())));
}
