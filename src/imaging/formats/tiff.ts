/**
 * Multi-page grayscale TIFF stacks (8/16/32-bit integer and 32/64-bit float, any compression
 * geotiff decodes), read one page at a time through geotiff's file source: only the page's strips
 * or tiles are read. Pixel size from ImageJ metadata or the resolution tags.
 */
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { GeoTIFF, GeoTIFFImage } from 'geotiff';
import { ImageFormatError } from '../errors.js';
import {
  allocPlane,
  BYTES_PER_PIXEL,
  type ImageStack,
  type PixelSize,
  type PixelType,
  type PlaneArray,
  type SpaceUnit,
} from '../types.js';

function pixelTypeOf(bits: number, format: number): PixelType | undefined {
  // SampleFormat: 1 unsigned, 2 signed, 3 float.
  const table: Record<string, PixelType> = {
    '8:1': 'uint8',
    '8:2': 'int8',
    '16:1': 'uint16',
    '16:2': 'int16',
    '32:1': 'uint32',
    '32:2': 'int32',
    '32:3': 'float32',
    '64:3': 'float64',
  };
  return table[`${bits}:${format}`];
}

function rational(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) || ArrayBuffer.isView(v)) {
    const a = Array.from(v as ArrayLike<number>);
    if (a.length >= 2 && a[1]) return a[0]! / a[1]!;
    if (a.length === 1) return a[0];
  }
  return undefined;
}

const UNIT_ALIASES: Record<string, { unit: SpaceUnit; scale: number }> = {
  micron: { unit: 'micrometer', scale: 1 },
  um: { unit: 'micrometer', scale: 1 },
  µm: { unit: 'micrometer', scale: 1 },
  '\\u00B5m': { unit: 'micrometer', scale: 1 },
  micrometer: { unit: 'micrometer', scale: 1 },
  nm: { unit: 'nanometer', scale: 1 },
  nanometer: { unit: 'nanometer', scale: 1 },
  A: { unit: 'angstrom', scale: 1 },
  Å: { unit: 'angstrom', scale: 1 },
  angstrom: { unit: 'angstrom', scale: 1 },
  mm: { unit: 'millimeter', scale: 1 },
};

/** ImageJ writes "ImageJ=1.x\nimages=N\nspacing=z\nunit=micron\n..." into ImageDescription. */
export function parseImageJDescription(desc: string | undefined): Record<string, string> | undefined {
  if (!desc || !desc.startsWith('ImageJ=')) return undefined;
  const out: Record<string, string> = {};
  for (const line of desc.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

async function pixelSizeOf(img: GeoTIFFImage): Promise<PixelSize | undefined> {
  const fd = img.getFileDirectory();
  const xr = rational(await fd.loadValue('XResolution'));
  const yr = rational(await fd.loadValue('YResolution')) ?? xr;
  const desc = (await fd.loadValue('ImageDescription')) as string | undefined;
  const ij = parseImageJDescription(typeof desc === 'string' ? desc : undefined);
  if (!xr || !yr) return undefined;
  if (ij?.unit) {
    const u = UNIT_ALIASES[ij.unit];
    if (!u) return undefined;
    const spacing = ij.spacing ? Number(ij.spacing) : NaN;
    return { x: 1 / xr, y: 1 / yr, z: spacing > 0 ? spacing : 1 / xr, unit: u.unit };
  }
  const resUnit = Number(await fd.loadValue('ResolutionUnit')) || 2;
  const umPerUnit = resUnit === 2 ? 25400 : resUnit === 3 ? 10000 : 0;
  if (!umPerUnit) return undefined;
  return { x: umPerUnit / xr, y: umPerUnit / yr, z: umPerUnit / xr, unit: 'micrometer' };
}

export class TiffStack implements ImageStack {
  private constructor(
    readonly path: string,
    private readonly tiff: GeoTIFF,
    readonly width: number,
    readonly height: number,
    readonly depth: number,
    readonly dtype: PixelType,
    readonly pixelSize: PixelSize | undefined,
    private readonly fileBytes: number,
    private readonly fh: FileHandle,
  ) {}

  static async open(path: string): Promise<TiffStack> {
    const fileBytes = (await stat(path)).size;
    await checkFirstDirectory(path, fileBytes);
    let tiff: GeoTIFF;
    try {
      // Loaded on first use: geotiff takes ~0.1 s to import, which an MRC-only process (and each
      // motion-correction worker thread) would otherwise pay.
      const { fromFile } = await import('geotiff');
      tiff = await fromFile(path);
    } catch (err) {
      throw new ImageFormatError(path, `not a readable TIFF file (${(err as Error).message})`, {
        cause: err,
      });
    }
    try {
      let depth: number;
      let first: GeoTIFFImage;
      try {
        depth = await tiff.getImageCount();
        first = await tiff.getImage(0);
      } catch (err) {
        throw new ImageFormatError(path, `corrupt TIFF directory (${(err as Error).message})`, {
          cause: err,
        });
      }
      const spp = first.getSamplesPerPixel();
      if (spp !== 1) {
        throw new ImageFormatError(
          path,
          `page 0 has ${spp} samples per pixel; jobd reads grayscale stacks (1 sample)`,
        );
      }
      const dtype = pixelTypeOf(first.getBitsPerSample(), first.getSampleFormat());
      if (!dtype) {
        throw new ImageFormatError(
          path,
          `page 0 has ${first.getBitsPerSample()}-bit samples of format ${first.getSampleFormat()}; supported: 8, 16, 32-bit integers and 32, 64-bit floats`,
        );
      }
      return new TiffStack(
        path,
        tiff,
        first.getWidth(),
        first.getHeight(),
        depth,
        dtype,
        await pixelSizeOf(first),
        fileBytes,
        await open(path, 'r'),
      );
    } catch (err) {
      await tiff.close();
      throw err;
    }
  }

  async readPlane(z: number): Promise<PlaneArray> {
    if (!Number.isInteger(z) || z < 0 || z >= this.depth) {
      throw new RangeError(`${this.path}: page ${z} is out of range 0..${this.depth - 1}`);
    }
    let img: GeoTIFFImage;
    try {
      img = await this.tiff.getImage(z);
    } catch (err) {
      throw new ImageFormatError(this.path, `page ${z}: corrupt directory (${(err as Error).message})`, {
        cause: err,
      });
    }
    if (img.getWidth() !== this.width || img.getHeight() !== this.height) {
      throw new ImageFormatError(
        this.path,
        `page ${z} is ${img.getWidth()}×${img.getHeight()} but page 0 is ${this.width}×${this.height}; a stack needs equal pages` +
          (img.getWidth() * img.getHeight() === 0
            ? ' (an empty page directory: the file is truncated or corrupt)'
            : ''),
      );
    }
    const t = pixelTypeOf(img.getBitsPerSample(), img.getSampleFormat());
    if (t !== this.dtype || img.getSamplesPerPixel() !== 1) {
      throw new ImageFormatError(this.path, `page ${z} has a different pixel type from page 0`);
    }
    await this.checkExtent(img, z);
    const raw = await this.readUncompressed(img);
    if (raw) return raw;
    try {
      const r = await img.readRasters({ samples: [0], interleave: true });
      return r as unknown as PlaneArray;
    } catch (err) {
      throw new ImageFormatError(this.path, `page ${z}: cannot decode (${(err as Error).message})`, {
        cause: err,
      });
    }
  }

  /** A truncated file would otherwise decode as zeros or garbage: check the page's bytes exist. */
  private async checkExtent(img: GeoTIFFImage, z: number): Promise<void> {
    const fd = img.getFileDirectory();
    const tiled = fd.hasTag('TileOffsets');
    const offsets = (await fd.loadValue(tiled ? 'TileOffsets' : 'StripOffsets')) as
      ArrayLike<number> | undefined;
    const counts = (await fd.loadValue(tiled ? 'TileByteCounts' : 'StripByteCounts')) as
      ArrayLike<number> | undefined;
    if (!offsets || !counts) throw new ImageFormatError(this.path, `page ${z} has no strip or tile offsets`);
    let end = 0;
    for (let i = 0; i < offsets.length; i++) end = Math.max(end, Number(offsets[i]) + Number(counts[i] ?? 0));
    if (end > this.fileBytes) {
      throw new ImageFormatError(
        this.path,
        `page ${z} data ends at byte ${end} but the file has ${this.fileBytes} bytes: truncated`,
      );
    }
  }

  /**
   * Uncompressed, strip-organised, one-sample pages (what cameras and most writers produce) are read
   * straight into the plane: geotiff's general path converts pixel by pixel, several times slower.
   */
  private async readUncompressed(img: GeoTIFFImage): Promise<PlaneArray | undefined> {
    const fd = img.getFileDirectory();
    const compression = Number(fd.getValue('Compression') ?? 1);
    const planar = Number(fd.getValue('PlanarConfiguration') ?? 1);
    const predictor = Number((await fd.loadValue('Predictor')) ?? 1);
    if (compression !== 1 || planar !== 1 || predictor !== 1 || fd.hasTag('TileOffsets')) return undefined;
    const offsets = (await fd.loadValue('StripOffsets')) as ArrayLike<number>;
    const counts = (await fd.loadValue('StripByteCounts')) as ArrayLike<number>;
    const bpp = BYTES_PER_PIXEL[this.dtype];
    const total = this.width * this.height * bpp;
    let sum = 0;
    for (let i = 0; i < counts.length; i++) sum += Number(counts[i]);
    if (sum !== total) return undefined;
    const plane = allocPlane(this.dtype, this.width * this.height);
    const bytes = new Uint8Array(plane.buffer, plane.byteOffset, plane.byteLength);
    let at = 0;
    for (let i = 0; i < offsets.length;) {
      // Coalesce strips that follow each other in the file into one read.
      let j = i;
      let len = Number(counts[i]);
      while (j + 1 < offsets.length && Number(offsets[j + 1]) === Number(offsets[j]) + Number(counts[j])) {
        j++;
        len += Number(counts[j]);
      }
      const { bytesRead } = await this.fh.read(bytes, at, len, Number(offsets[i]));
      if (bytesRead !== len)
        throw new ImageFormatError(this.path, `strip at byte ${offsets[i]} is cut short: truncated`);
      at += len;
      i = j + 1;
    }
    if (!this.tiff.littleEndian && bpp > 1) {
      for (let i = 0; i < bytes.length; i += bpp) bytes.subarray(i, i + bpp).reverse();
    }
    return plane;
  }

  async close(): Promise<void> {
    await this.fh.close();
    await this.tiff.close();
  }
}

/**
 * A truncated TIFF usually loses its image directory (writers put it last), and geotiff then reads
 * zeros past the end: say so plainly instead of reporting the zeros' meaningless fields.
 */
async function checkFirstDirectory(path: string, fileBytes: number): Promise<void> {
  const fh = await open(path, 'r');
  const head = Buffer.alloc(16);
  try {
    await fh.read(head, 0, 16, 0);
  } finally {
    await fh.close();
  }
  const order = head.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return; // geotiff names what it is not
  const le = order === 'II';
  const magic = le ? head.readUInt16LE(2) : head.readUInt16BE(2);
  const offset =
    magic === 43
      ? Number(le ? head.readBigUInt64LE(8) : head.readBigUInt64BE(8))
      : le
        ? head.readUInt32LE(4)
        : head.readUInt32BE(4);
  if (offset + 2 > fileBytes) {
    throw new ImageFormatError(
      path,
      `the first image directory is at byte ${offset}, past the end of the ${fileBytes}-byte file: truncated`,
    );
  }
}
