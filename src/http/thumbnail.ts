/**
 * Thumbnails of MRC images in the data dirs (motion correction's aligned sums) for the session page:
 * the first plane, halved by 2×2 means until it fits THUMB_EDGE, as an 8-bit PNG scaled between the
 * 0.5% and 99.5% quantiles (as the power-spectrum PNGs are). Each is made once per file version (path,
 * size, modification time) and kept in a small LRU, so a page that refreshes does not redo the work;
 * concurrent requests for one file share one computation.
 */
import { MrcStack } from '../imaging/formats/mrc.js';
import { encodeGrayPng } from '../imaging/formats/png.js';
import { downsample2x } from '../imaging/kernels/downsample.js';
import type { DataRoots } from '../jobs/lib/paths.js';
import { openDataFile, problem } from './imageFile.js';

/** The longest edge of a thumbnail, pixels. */
export const THUMB_EDGE = 256;
/** A plane larger than this (pixels) is refused: a thumbnail is not worth reading gigabytes for. */
export const THUMB_MAX_PIXELS = 64 * 1024 * 1024;
const CACHE_ENTRIES = 256;

export class Thumbnails {
  private readonly cache = new Map<string, Promise<Buffer>>();
  constructor(private readonly roots: DataRoots) {}

  /** The PNG thumbnail of the MRC image at `path` (absolute, inside the data dirs). */
  async of(path: string): Promise<Buffer> {
    const { fh, real, size, mtimeMs } = await openDataFile(path, this.roots);
    const key = `${real}\0${size}\0${mtimeMs}`;
    let png = this.cache.get(key);
    if (png) {
      await fh.close();
      // Most recently used last: the oldest entry is the one dropped.
      this.cache.delete(key);
      this.cache.set(key, png);
      return png;
    }
    png = this.make(path, fh.fd).finally(() => fh.close());
    this.cache.set(key, png);
    if (this.cache.size > CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    // A failure is not kept: the file may be complete on the next try.
    png.catch(() => this.cache.get(key) === png && this.cache.delete(key));
    return png;
  }

  private async make(path: string, fd: number): Promise<Buffer> {
    // Through the descriptor the data-dir check was made on, not the name.
    const stack = await MrcStack.open(`/proc/self/fd/${fd}`).catch((err: Error) =>
      problem(415, 'Unsupported Media Type', `"${path}" is not an MRC image jobd reads (${err.message})`),
    );
    try {
      if (stack.width * stack.height > THUMB_MAX_PIXELS)
        problem(
          413,
          'Content Too Large',
          `"${path}" has ${stack.width}×${stack.height} pixels a plane; thumbnails are made of up to ${THUMB_MAX_PIXELS}`,
        );
      let img = { data: await stack.readPlane(0), width: stack.width, height: stack.height };
      while (Math.max(img.width, img.height) > THUMB_EDGE)
        img = downsample2x(img.data, img.width, img.height, 'float32');
      return encodeGrayPng(img.data, img.width, img.height);
    } finally {
      await stack.close();
    }
  }
}
