/**
 * Images from the data dirs, for the dashboard's thumbnails: the path is realpath-confined to the
 * configured data dirs (the data-dir guard the job types use), opened without following a final
 * symlink, checked again through the open descriptor, and served only when its first bytes say it is
 * a PNG, JPEG, GIF or WebP image (never SVG or anything a browser could run).
 */
import { constants } from 'node:fs';
import { open, realpath, type FileHandle } from 'node:fs/promises';
import { confine, isInside, type DataRoots } from '../jobs/lib/paths.js';
import { HttpProblem } from './problem.js';

/** Thumbnails are small; a larger file is refused rather than streamed into the page. */
export const IMAGE_MAX_BYTES = 32 * 1024 * 1024;

const KINDS: { type: string; test: (b: Buffer) => boolean }[] = [
  { type: 'image/png', test: (b) => b.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex')) },
  { type: 'image/jpeg', test: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff },
  { type: 'image/gif', test: (b) => /^GIF8[79]a/.test(b.subarray(0, 6).toString('latin1')) },
  {
    type: 'image/webp',
    test: (b) =>
      b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP',
  },
];

/**
 * Opens a file inside the data dirs for reading, as the thumbnails need it: realpath-confined, opened
 * without following a final symlink, checked again through the descriptor. Errors are problem+json
 * naming `query.path`. The caller closes the handle.
 */
export async function openDataFile(
  path: string,
  roots: DataRoots,
): Promise<{ fh: FileHandle; real: string; size: number; mtimeMs: number }> {
  const refuse = (status: number, title: string, message: string): never => {
    throw new HttpProblem(status, title, `${FIELD}: ${message}`, [{ path: FIELD, message }]);
  };
  let real: string;
  let root: string;
  try {
    const c = await confine(path, roots, { field: FIELD, mustExist: true, kind: 'file' });
    real = c.real;
    root = c.root;
  } catch (err) {
    const e = err as { name?: string; message?: string };
    const message = (e.message ?? String(err)).replace(/^query\.path: /, '');
    if (e.name === 'PathNotAllowedError') return refuse(403, 'Forbidden', message);
    if (/does not exist/.test(message)) return refuse(404, 'Not Found', message);
    return refuse(400, 'Bad Request', message);
  }
  const fh = await open(real, constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: NodeJS.ErrnoException) =>
    refuse(404, 'Not Found', `"${path}" cannot be opened (${err.code ?? err.message})`),
  );
  try {
    // What was opened, not what the name meant a moment ago: a component swapped meanwhile is caught.
    const opened = await realpath(`/proc/self/fd/${fh.fd}`).catch(() => real);
    if (opened !== real || !isInside(opened, root))
      refuse(403, 'Forbidden', `"${path}" changed while it was opened; refusing it`);
    const st = await fh.stat();
    if (!st.isFile()) refuse(400, 'Bad Request', `"${path}" is not a regular file`);
    return { fh, real, size: st.size, mtimeMs: st.mtimeMs };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

export async function readDataImage(
  path: string,
  roots: DataRoots,
): Promise<{ type: string; body: Buffer; path: string }> {
  const { fh, real, size } = await openDataFile(path, roots);
  try {
    if (size > IMAGE_MAX_BYTES)
      problem(
        413,
        'Content Too Large',
        `"${path}" is ${size} bytes; images up to ${IMAGE_MAX_BYTES} are served`,
      );
    const body = await fh.readFile();
    const kind = KINDS.find((k) => k.test(body));
    if (!kind) problem(415, 'Unsupported Media Type', `"${path}" is not a PNG, JPEG, GIF or WebP image`);
    return { type: kind!.type, body, path: real };
  } finally {
    await fh.close();
  }
}

const FIELD = 'query.path';

/** A problem+json error about `query.path`. */
export function problem(status: number, title: string, message: string): never {
  throw new HttpProblem(status, title, `${FIELD}: ${message}`, [{ path: FIELD, message }]);
}
