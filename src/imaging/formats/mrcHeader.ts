/**
 * The MRC2014 header: 1024 bytes of 56 words and ten 80-character labels, then NSYMBT bytes of
 * extended header, then the data. Only what jobd needs is decoded; validation names the problem.
 */
import { formatBytes } from '../progress.js';
import type { PixelType } from '../types.js';

export const MRC_HEADER_BYTES = 1024;

export type MrcMode = 0 | 1 | 2 | 6 | 12;

export const MRC_MODES: Record<MrcMode, { name: string; bytes: number; dtype: PixelType }> = {
  0: { name: 'int8', bytes: 1, dtype: 'int8' },
  1: { name: 'int16', bytes: 2, dtype: 'int16' },
  2: { name: 'float32', bytes: 4, dtype: 'float32' },
  6: { name: 'uint16', bytes: 2, dtype: 'uint16' },
  12: { name: 'float16', bytes: 2, dtype: 'float32' },
};

const OTHER_MODES: Record<number, string> = {
  3: 'complex int16',
  4: 'complex float32',
  101: '4-bit packed',
};

export interface MrcHeader {
  nx: number;
  ny: number;
  nz: number;
  mode: MrcMode;
  mx: number;
  my: number;
  mz: number;
  /** Cell dimensions in Å. */
  cella: [number, number, number];
  ispg: number;
  nsymbt: number;
  dmin: number;
  dmax: number;
  dmean: number;
  rms: number;
  littleEndian: boolean;
  /** Offset of the first data byte: 1024 + NSYMBT. */
  dataOffset: number;
  labels: string[];
}

/** Å per pixel along x, y, z from CELLA / MX, MY, MZ; undefined when the header leaves them zero. */
export function mrcPixelSize(h: MrcHeader): { x: number; y: number; z: number } | undefined {
  const px = h.mx > 0 ? h.cella[0] / h.mx : 0;
  if (!(px > 0) || !Number.isFinite(px)) return undefined;
  const py = h.my > 0 && h.cella[1] > 0 ? h.cella[1] / h.my : px;
  const pz = h.mz > 0 && h.cella[2] > 0 ? h.cella[2] / h.mz : px;
  return { x: px, y: py, z: pz };
}

function plausible(v: DataView, le: boolean): boolean {
  const nx = v.getInt32(0, le);
  const ny = v.getInt32(4, le);
  const nz = v.getInt32(8, le);
  const mode = v.getInt32(12, le);
  return (
    nx > 0 && ny > 0 && nz > 0 && nx < 1 << 24 && ny < 1 << 24 && nz < 1 << 24 && mode >= 0 && mode < 1024
  );
}

/**
 * Parses and validates a header. `fileSize` checks that the data the header promises is present.
 * Throws a plain Error whose message is the problem; callers prefix the file name.
 */
export function parseMrcHeader(buf: Uint8Array, fileSize: number): MrcHeader {
  if (buf.length < MRC_HEADER_BYTES || fileSize < MRC_HEADER_BYTES) {
    throw new Error(`file has ${fileSize} bytes, fewer than the 1024-byte MRC header`);
  }
  const v = new DataView(buf.buffer, buf.byteOffset, MRC_HEADER_BYTES);
  // MACHST: 0x44 0x44 (or 0x44 0x41) little-endian, 0x11 0x11 big-endian. Old writers leave it zero,
  // so fall back to whichever byte order gives a plausible header.
  const m0 = buf[212];
  let littleEndian = m0 === 0x44 ? true : m0 === 0x11 ? false : plausible(v, true) || !plausible(v, false);
  if (!plausible(v, littleEndian) && plausible(v, !littleEndian)) littleEndian = !littleEndian;
  const le = littleEndian;
  const i32 = (word: number) => v.getInt32(word * 4, le);
  const f32 = (word: number) => v.getFloat32(word * 4, le);
  const nx = i32(0);
  const ny = i32(1);
  const nz = i32(2);
  const mode = i32(3);
  if (!(nx > 0 && ny > 0 && nz > 0)) {
    throw new Error(
      `header has invalid dimensions NX=${nx} NY=${ny} NZ=${nz} (each must be a positive integer)`,
    );
  }
  if (!(mode in MRC_MODES)) {
    const what = OTHER_MODES[mode] ? ` (${OTHER_MODES[mode]})` : '';
    throw new Error(
      `header has mode ${mode}${what}, which jobd does not read; supported modes: 0 (int8), 1 (int16), 2 (float32), 6 (uint16), 12 (float16)`,
    );
  }
  const mapc = i32(16);
  const mapr = i32(17);
  const maps = i32(18);
  if (!(mapc === 0 && mapr === 0 && maps === 0) && !(mapc === 1 && mapr === 2 && maps === 3)) {
    throw new Error(`header has axis order MAPC,MAPR,MAPS = ${mapc},${mapr},${maps}; jobd reads only 1,2,3`);
  }
  const nsymbt = i32(23);
  if (nsymbt < 0) throw new Error(`header has NSYMBT=${nsymbt}; the extended header size must be 0 or more`);
  const m = mode as MrcMode;
  const dataOffset = MRC_HEADER_BYTES + nsymbt;
  const dataBytes = nx * ny * nz * MRC_MODES[m].bytes;
  if (dataOffset + dataBytes > fileSize) {
    throw new Error(
      `header says ${nz}×${ny}×${nx} mode ${m} (${formatBytes(dataBytes)} of data from byte ${dataOffset}) ` +
        `but the file has ${formatBytes(fileSize)}: truncated or not an MRC file`,
    );
  }
  const nlabl = Math.max(0, Math.min(10, i32(55)));
  const labels: string[] = [];
  for (let i = 0; i < nlabl; i++) {
    labels.push(
      Buffer.from(buf.subarray(224 + i * 80, 304 + i * 80))
        .toString('latin1')
        .trimEnd(),
    );
  }
  return {
    nx,
    ny,
    nz,
    mode: m,
    mx: i32(7),
    my: i32(8),
    mz: i32(9),
    cella: [f32(10), f32(11), f32(12)],
    dmin: f32(19),
    dmax: f32(20),
    dmean: f32(21),
    ispg: i32(22),
    nsymbt,
    rms: f32(54),
    littleEndian,
    dataOffset,
    labels,
  };
}

export interface MrcHeaderFields {
  nx: number;
  ny: number;
  nz: number;
  mode: MrcMode;
  /** Å per pixel; written as CELLA = N × size with MX, MY, MZ = NX, NY, NZ. */
  pixelSize?: { x: number; y: number; z: number };
  /** 0 for an image stack (the default), 1 for a volume. */
  ispg?: number;
  dmin: number;
  dmax: number;
  dmean: number;
  rms: number;
  labels?: string[];
}

/** Encodes a little-endian MRC2014 header with no extended header. */
export function encodeMrcHeader(f: MrcHeaderFields): Uint8Array {
  const buf = new Uint8Array(MRC_HEADER_BYTES);
  const v = new DataView(buf.buffer);
  const i32 = (w: number, x: number) => v.setInt32(w * 4, x, true);
  const f32 = (w: number, x: number) => v.setFloat32(w * 4, x, true);
  i32(0, f.nx);
  i32(1, f.ny);
  i32(2, f.nz);
  i32(3, f.mode);
  i32(7, f.nx);
  i32(8, f.ny);
  i32(9, f.nz);
  const p = f.pixelSize ?? { x: 1, y: 1, z: 1 };
  f32(10, f.nx * p.x);
  f32(11, f.ny * p.y);
  f32(12, f.nz * p.z);
  f32(13, 90);
  f32(14, 90);
  f32(15, 90);
  i32(16, 1);
  i32(17, 2);
  i32(18, 3);
  f32(19, f.dmin);
  f32(20, f.dmax);
  f32(21, f.dmean);
  i32(22, f.ispg ?? 0);
  i32(23, 0);
  buf.set(Buffer.from('MRCO', 'latin1'), 104); // EXTTYP: no extended header of a known kind
  i32(27, 20140);
  buf.set(Buffer.from('MAP ', 'latin1'), 208);
  buf[212] = 0x44;
  buf[213] = 0x44;
  f32(54, f.rms);
  const labels = (f.labels ?? []).slice(0, 10);
  i32(55, labels.length);
  labels.forEach((l, i) => buf.set(Buffer.from(l.padEnd(80).slice(0, 80), 'latin1'), 224 + i * 80));
  return buf;
}
