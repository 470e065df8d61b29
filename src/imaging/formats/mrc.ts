/**
 * MRC stacks and volumes: planes read by offset (never the whole file) and written in order
 * to a temporary name that is renamed into place when complete.
 */
import { open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { ImageFormatError } from '../errors.js';
import type { ImageStack, PixelSize, PixelType, PlaneArray } from '../types.js';
import { decodeFloat16, encodeFloat16 } from './float16.js';
import {
  encodeMrcHeader,
  MRC_HEADER_BYTES,
  MRC_MODES,
  mrcPixelSize,
  parseMrcHeader,
  type MrcHeader,
  type MrcMode,
} from './mrcHeader.js';

export async function readMrcHeader(path: string): Promise<MrcHeader> {
  const fh = await open(path, 'r');
  try {
    return await headerOf(fh, path);
  } finally {
    await fh.close();
  }
}

async function headerOf(fh: FileHandle, path: string): Promise<MrcHeader> {
  const size = (await fh.stat()).size;
  const buf = new Uint8Array(MRC_HEADER_BYTES);
  await fh.read(buf, 0, MRC_HEADER_BYTES, 0);
  try {
    return parseMrcHeader(buf, size);
  } catch (err) {
    throw new ImageFormatError(path, (err as Error).message);
  }
}

function swapBytes(buf: Uint8Array, width: number): void {
  for (let i = 0; i < buf.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = buf[a]!;
      buf[a] = buf[b]!;
      buf[b] = t;
    }
  }
}

export class MrcStack implements ImageStack {
  readonly width: number;
  readonly height: number;
  readonly depth: number;
  readonly dtype: PixelType;
  readonly pixelSize: PixelSize | undefined;
  private constructor(
    readonly path: string,
    readonly header: MrcHeader,
    private readonly fh: FileHandle,
  ) {
    this.width = header.nx;
    this.height = header.ny;
    this.depth = header.nz;
    this.dtype = MRC_MODES[header.mode].dtype;
    const p = mrcPixelSize(header);
    this.pixelSize = p ? { ...p, unit: 'angstrom' } : undefined;
  }

  static async open(path: string): Promise<MrcStack> {
    const fh = await open(path, 'r');
    try {
      return new MrcStack(path, await headerOf(fh, path), fh);
    } catch (err) {
      await fh.close();
      throw err;
    }
  }

  get planeBytes(): number {
    return this.width * this.height * MRC_MODES[this.header.mode].bytes;
  }

  async readPlane(z: number, reuse?: PlaneArray): Promise<PlaneArray> {
    if (!Number.isInteger(z) || z < 0 || z >= this.depth) {
      throw new RangeError(`${this.path}: plane ${z} is out of range 0..${this.depth - 1}`);
    }
    const n = this.width * this.height;
    const bytes = MRC_MODES[this.header.mode].bytes;
    // A plane's whole buffer, of this size, as this stack returns them (mode 12 returns decoded floats).
    const own =
      reuse &&
      this.header.mode !== 12 &&
      reuse.byteOffset === 0 &&
      reuse.buffer instanceof ArrayBuffer &&
      reuse.buffer.byteLength === n * bytes;
    const buf = own ? new Uint8Array(reuse.buffer) : new Uint8Array(n * bytes);
    const { bytesRead } = await this.fh.read(buf, 0, buf.length, this.header.dataOffset + z * buf.length);
    if (bytesRead !== buf.length) {
      throw new ImageFormatError(
        this.path,
        `plane ${z} ends past the end of the file (file changed while reading?)`,
      );
    }
    if (!this.header.littleEndian && bytes > 1) swapBytes(buf, bytes);
    const ab = buf.buffer;
    switch (this.header.mode) {
      case 0:
        return new Int8Array(ab);
      case 1:
        return new Int16Array(ab);
      case 2:
        return new Float32Array(ab);
      case 6:
        return new Uint16Array(ab);
      case 12:
        return decodeFloat16(new Uint16Array(ab));
    }
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export interface MrcWriterOptions {
  width: number;
  height: number;
  depth: number;
  mode: MrcMode;
  pixelSize?: { x: number; y: number; z: number };
  /** 0 (image stack, default) or 1 (volume). */
  ispg?: number;
  labels?: string[];
}

/**
 * Writes planes in any order; statistics (min, max, mean, rms) go into the header at close().
 * The file appears under its name only when close() succeeds.
 */
export class MrcWriter {
  private min = Infinity;
  private max = -Infinity;
  private sum = 0;
  private sumSq = 0;
  private written = new Set<number>();
  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly fh: FileHandle,
    private readonly opts: MrcWriterOptions,
  ) {}

  static async create(path: string, opts: MrcWriterOptions): Promise<MrcWriter> {
    for (const k of ['width', 'height', 'depth'] as const) {
      if (!Number.isInteger(opts[k]) || opts[k] <= 0) {
        throw new RangeError(`MRC ${k} = ${opts[k]} is not allowed: must be a positive integer`);
      }
    }
    if (!(opts.mode in MRC_MODES)) {
      throw new RangeError(`MRC mode = ${opts.mode} is not allowed: must be one of 0, 1, 2, 6, 12`);
    }
    const tmp = `${path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w');
    return new MrcWriter(path, tmp, fh, opts);
  }

  async writePlane(z: number, data: ArrayLike<number>): Promise<void> {
    const { width, height, depth, mode } = this.opts;
    const n = width * height;
    if (!Number.isInteger(z) || z < 0 || z >= depth)
      throw new RangeError(`plane ${z} is out of range 0..${depth - 1}`);
    if (data.length !== n)
      throw new RangeError(`plane ${z} has ${data.length} pixels, expected ${width}×${height}`);
    let out: ArrayBufferView;
    switch (mode) {
      case 0:
        out = Int8Array.from(data as ArrayLike<number>);
        break;
      case 1:
        out = Int16Array.from(data as ArrayLike<number>);
        break;
      case 2:
        out = data instanceof Float32Array ? data : Float32Array.from(data);
        break;
      case 6:
        out = Uint16Array.from(data as ArrayLike<number>);
        break;
      case 12:
        out = encodeFloat16(data);
        break;
    }
    // Statistics of what is stored (after the cast), as readers will see it.
    const stored = mode === 12 ? decodeFloat16(out as Uint16Array) : (out as unknown as ArrayLike<number>);
    let mn = this.min;
    let mx = this.max;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const x = stored[i]!;
      if (x < mn) mn = x;
      if (x > mx) mx = x;
      s += x;
      s2 += x * x;
    }
    this.min = mn;
    this.max = mx;
    this.sum += s;
    this.sumSq += s2;
    this.written.add(z);
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    await this.fh.write(bytes, 0, bytes.length, MRC_HEADER_BYTES + z * bytes.length);
  }

  async close(): Promise<void> {
    const { width, height, depth } = this.opts;
    if (this.written.size !== depth) {
      await this.abort();
      throw new Error(`${this.path}: only ${this.written.size} of ${depth} planes were written`);
    }
    const count = width * height * depth;
    const mean = this.sum / count;
    const rms = Math.sqrt(Math.max(0, this.sumSq / count - mean * mean));
    const header = encodeMrcHeader({
      nx: width,
      ny: height,
      nz: depth,
      mode: this.opts.mode,
      ...(this.opts.pixelSize ? { pixelSize: this.opts.pixelSize } : {}),
      ispg: this.opts.ispg ?? 0,
      dmin: this.min,
      dmax: this.max,
      dmean: mean,
      rms,
      labels: this.opts.labels ?? ['jobd'],
    });
    await this.fh.write(header, 0, header.length, 0);
    await this.fh.sync();
    await this.fh.close();
    await rename(this.tmp, this.path);
  }

  async abort(): Promise<void> {
    await this.fh.close().catch(() => {});
    await rm(this.tmp, { force: true });
  }
}

/** Writes a whole image (depth 1) or stack in one call; for small outputs such as spectra. */
export async function writeMrc(
  path: string,
  planes: ArrayLike<number>[],
  opts: Omit<MrcWriterOptions, 'depth'>,
): Promise<void> {
  const w = await MrcWriter.create(path, { ...opts, depth: planes.length });
  try {
    for (let z = 0; z < planes.length; z++) await w.writePlane(z, planes[z]!);
  } catch (err) {
    await w.abort();
    throw err;
  }
  await w.close();
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}
