/**
 * Outputs appear whole or not at all: they are built under a temporary sibling name and renamed into
 * place. A crashed run's temporaries are found by their name and removed by the next run.
 */
import { randomBytes } from 'node:crypto';
import { open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { WriteStream } from 'node:fs';
import { isAlive } from './processGroup.js';

const MARK = '.jobd-tmp-';

/** A temporary sibling of `target`: `.<name>.jobd-tmp-<pid>-<random>`, in the same directory. */
export function tempSibling(target: string): string {
  return join(dirname(target), `.${basename(target)}${MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Removes temporaries of `target` left by runs that died (their pid is not alive on this host).
 * Returns the paths removed.
 */
export async function cleanStaleTemps(target: string): Promise<string[]> {
  const dir = dirname(target);
  const prefix = `.${basename(target)}${MARK}`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && (await isAlive(pid))) continue;
    if (pid === process.pid) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/**
 * Drops a write stream's temporary: destroys the stream, waits until its file is closed, then removes
 * it. A stream opens its file asynchronously, so removing the path right after `destroy()` can run
 * before the open and leave a file behind.
 */
export async function discardTemp(out: WriteStream, tmp: string): Promise<void> {
  if (!out.closed) {
    const closed = new Promise<void>((resolve) => out.once('close', () => resolve()));
    out.destroy();
    await closed;
  }
  await rm(tmp, { recursive: true, force: true });
}

/** fsync a directory, so a rename in it survives a power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes a file whole: temporary sibling, fsync, rename, fsync of the directory. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = tempSibling(path);
  try {
    await writeFile(tmp, data, { flush: true });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}

/**
 * Moves a finished temporary (file or directory) to `target`, replacing what is there: the old one is
 * renamed aside first and removed after, so `target` is never missing nor half-written.
 */
export async function renameIntoPlace(tmp: string, target: string): Promise<void> {
  try {
    await rename(tmp, target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR' && code !== 'ENOTDIR') throw err;
    const old = tempSibling(target);
    await rename(target, old);
    await rename(tmp, target);
    await rm(old, { recursive: true, force: true });
  }
  await fsyncDir(dirname(target));
}
