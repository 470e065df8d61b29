/**
 * Light header checks of scientific formats, a few lines each: enough to tell a truncated or mislabelled
 * file, not a full reader. TIFF (magic and first IFD), MRC (mode, dimensions against the file size),
 * HDF5 (signature), Zarr (metadata files parse).
 */
import { open, readFile } from 'node:fs/promises';

export type FormatName = 'tiff' | 'mrc' | 'hdf5' | 'zarr';

export function formatOf(path: string): FormatName | null {
  const p = path.toLowerCase();
  if (/\.(tif|tiff)$/.test(p)) return 'tiff';
  if (/\.(mrc|mrcs|map|st|ali|rec)$/.test(p)) return 'mrc';
  if (/\.(h5|hdf5|hdf|nxs)$/.test(p)) return 'hdf5';
  if (/(^|\/)(\.zarray|\.zgroup|\.zattrs|zarr\.json)$/.test(p)) return 'zarr';
  return null;
}

async function head(path: string, bytes: number, at = 0): Promise<{ buf: Buffer; size: number }> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(Math.max(0, Math.min(bytes, size - at)));
    if (buf.length) await fh.read(buf, 0, buf.length, at);
    return { buf, size };
  } finally {
    await fh.close();
  }
}

/** Returns a problem description, or null when the header looks right. */
export async function checkFormat(path: string, format: FormatName): Promise<string | null> {
  switch (format) {
    case 'tiff':
      return checkTiff(path);
    case 'mrc':
      return checkMrc(path);
    case 'hdf5':
      return checkHdf5(path);
    case 'zarr':
      return checkZarr(path);
  }
}

async function checkTiff(path: string): Promise<string | null> {
  const { buf, size } = await head(path, 16);
  if (buf.length < 8) return 'TIFF: shorter than a header';
  const order = buf.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return 'TIFF: no II/MM byte-order mark';
  const le = order === 'II';
  const magic = le ? buf.readUInt16LE(2) : buf.readUInt16BE(2);
  if (magic === 43) {
    if (buf.length < 16) return 'BigTIFF: shorter than a header';
    const off = Number(le ? buf.readBigUInt64LE(8) : buf.readBigUInt64BE(8));
    if (off < 16 || off + 8 > size)
      return `BigTIFF: first IFD offset ${off} is outside the file (${size} bytes)`;
    return null;
  }
  if (magic !== 42) return `TIFF: magic number ${magic}, expected 42`;
  const off = le ? buf.readUInt32LE(4) : buf.readUInt32BE(4);
  if (off < 8 || off + 2 > size) return `TIFF: first IFD offset ${off} is outside the file (${size} bytes)`;
  const ifd = (await head(path, 2, off)).buf;
  const n = le ? ifd.readUInt16LE(0) : ifd.readUInt16BE(0);
  if (n === 0 || off + 2 + n * 12 + 4 > size)
    return `TIFF: first IFD (${n} entries at ${off}) runs past the end of the file`;
  return null;
}

const MRC_MODE_BITS: Record<number, number> = { 0: 8, 1: 16, 2: 32, 3: 32, 4: 64, 6: 16, 12: 16, 101: 4 };

async function checkMrc(path: string): Promise<string | null> {
  const { buf, size } = await head(path, 1024);
  if (buf.length < 1024) return `MRC: ${size} bytes, shorter than the 1024-byte header`;
  // The machine stamp says the byte order; 0x11 is big-endian, anything else is taken as little-endian.
  const le = buf[212] !== 0x11;
  const int = (o: number): number => (le ? buf.readInt32LE(o) : buf.readInt32BE(o));
  const [nx, ny, nz, mode, next] = [int(0), int(4), int(8), int(12), int(92)];
  const bits = MRC_MODE_BITS[mode];
  if (bits === undefined) return `MRC: unknown mode ${mode}`;
  if (nx <= 0 || ny <= 0 || nz <= 0) return `MRC: bad dimensions ${nx}x${ny}x${nz}`;
  if (next < 0) return `MRC: negative extended header size ${next}`;
  const expected = 1024 + next + Math.ceil((nx * ny * nz * bits) / 8);
  if (size !== expected) {
    return `MRC: ${nx}x${ny}x${nz} mode ${mode} needs ${expected} bytes with the header, the file has ${size}`;
  }
  return null;
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

async function checkHdf5(path: string): Promise<string | null> {
  // The superblock is at 0, or at 512, 1024, 2048, ... when a user block precedes it.
  const { buf, size } = await head(path, 8);
  if (buf.equals(HDF5_SIGNATURE)) return null;
  for (let at = 512; at + 8 <= size && at <= 1 << 20; at *= 2) {
    if ((await head(path, 8, at)).buf.equals(HDF5_SIGNATURE)) return null;
  }
  return 'HDF5: no superblock signature';
}

async function checkZarr(path: string): Promise<string | null> {
  let meta: unknown;
  try {
    meta = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    return `Zarr: ${path.split('/').at(-1)} is not valid JSON (${(err as Error).message})`;
  }
  const m = meta as Record<string, unknown>;
  if (path.endsWith('.zarray')) {
    if (!Array.isArray(m.shape) || !Array.isArray(m.chunks) || m.dtype === undefined) {
      return 'Zarr: .zarray lacks shape, chunks or dtype';
    }
    if (m.shape.length !== m.chunks.length) return 'Zarr: .zarray shape and chunks differ in length';
  }
  if (path.endsWith('zarr.json')) {
    if (m.zarr_format !== 3 || (m.node_type !== 'array' && m.node_type !== 'group')) {
      return 'Zarr: zarr.json lacks zarr_format 3 or a node_type of array or group';
    }
    if (m.node_type === 'array' && !Array.isArray(m.shape)) return 'Zarr: zarr.json array lacks shape';
  }
  return null;
}
