import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageFormatError } from '../../src/imaging/errors.js';
import { decodeFloat16, encodeFloat16 } from '../../src/imaging/formats/float16.js';
import { MrcStack, MrcWriter, readMrcHeader, writeMrc } from '../../src/imaging/formats/mrc.js';
import { encodeMrcHeader, type MrcMode } from '../../src/imaging/formats/mrcHeader.js';
import { findPython, runPython } from '../fixtures/imaging/python.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-mrc-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const W = 48;
const H = 32;
const D = 3;
function plane(z: number, mode: MrcMode): number[] {
  return Array.from({ length: W * H }, (_, i) => {
    const v =
      mode === 0 ? ((i * 7 + z * 131) % 200) - 100 : ((i * 7 + z * 131) % 251) - (mode === 6 ? 0 : 120);
    return mode === 2 || mode === 12 ? v / 4 : v;
  });
}

describe('MRC', () => {
  for (const mode of [0, 1, 2, 6, 12] as MrcMode[]) {
    it(`writes and reads mode ${mode} plane by plane, with pixel size and statistics`, async () => {
      const path = join(dir, `m${mode}.mrc`);
      const planes = Array.from({ length: D }, (_, z) => plane(z, mode));
      await writeMrc(path, planes, { width: W, height: H, mode, pixelSize: { x: 1.25, y: 1.25, z: 2 } });
      const s = await MrcStack.open(path);
      try {
        expect([s.width, s.height, s.depth]).toEqual([W, H, D]);
        expect(s.pixelSize).toEqual({ x: 1.25, y: 1.25, z: 2, unit: 'angstrom' });
        for (const z of [2, 0, 1]) expect(Array.from(await s.readPlane(z))).toEqual(planes[z]);
        // A plane handed back is overwritten with the next one (mode 12 decodes into a new array).
        const first = await s.readPlane(0);
        const next = await s.readPlane(2, first);
        expect(Array.from(next)).toEqual(planes[2]);
        expect(next.buffer === first.buffer).toBe(mode !== 12);
        const other = new Float32Array(7);
        expect(Array.from(await s.readPlane(1, other))).toEqual(planes[1]);
        expect(Array.from(other)).toEqual([0, 0, 0, 0, 0, 0, 0]);
        const all = planes.flat();
        expect(s.header.dmin).toBe(Math.min(...all));
        expect(s.header.dmax).toBe(Math.max(...all));
        expect(s.header.dmean).toBeCloseTo(all.reduce((a, b) => a + b, 0) / all.length, 3);
      } finally {
        await s.close();
      }
    });
  }

  it('skips an extended header of NSYMBT bytes', async () => {
    const path = join(dir, 'ext.mrc');
    const header = encodeMrcHeader({ nx: 4, ny: 2, nz: 2, mode: 2, dmin: 0, dmax: 0, dmean: 0, rms: 0 });
    new DataView(header.buffer).setInt32(23 * 4, 200, true);
    const ext = new Uint8Array(200).fill(0xff);
    const data = new Float32Array(16).map((_, i) => i + 0.5);
    await writeFile(path, Buffer.concat([header, ext, new Uint8Array(data.buffer)]));
    const s = await MrcStack.open(path);
    expect(s.header.dataOffset).toBe(1224);
    expect(Array.from(await s.readPlane(1))).toEqual(Array.from(data.subarray(8)));
    await s.close();
  });

  it('reads big-endian files', async () => {
    const path = join(dir, 'be.mrc');
    const buf = Buffer.alloc(1024 + 2 * 3 * 2);
    buf.writeInt32BE(3, 0);
    buf.writeInt32BE(2, 4);
    buf.writeInt32BE(1, 8);
    buf.writeInt32BE(1, 12);
    buf.write('MAP ', 208, 'latin1');
    buf[212] = 0x11;
    buf[213] = 0x11;
    [1, -2, 300, -400, 5, 32767].forEach((v, i) => buf.writeInt16BE(v, 1024 + 2 * i));
    await writeFile(path, buf);
    const s = await MrcStack.open(path);
    expect(Array.from(await s.readPlane(0))).toEqual([1, -2, 300, -400, 5, 32767]);
    await s.close();
  });

  it('refuses a truncated file, naming the file, the header and the sizes', async () => {
    const path = join(dir, 'trunc.mrc');
    await writeMrc(path, [plane(0, 2), plane(1, 2)], { width: W, height: H, mode: 2 });
    await truncate(path, 1024 + W * H * 4 + 100);
    const err = await MrcStack.open(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageFormatError);
    expect((err as Error).name).toBe('ImageFormatError');
    expect((err as { code: string }).code).toBe('JOBD_DO_NOT_RETRY');
    expect((err as Error).message).toBe(
      `${path}: header says 2×32×48 mode 2 (12.0 KiB of data from byte 1024) but the file has 7.1 KiB: truncated or not an MRC file`,
    );
  });

  it('refuses corrupt headers with the problem named', async () => {
    const cases: [string, (v: DataView) => void, RegExp][] = [
      [
        'mode',
        (v) => v.setInt32(12, 4, true),
        /mode 4 \(complex float32\), which jobd does not read; supported modes: 0/,
      ],
      ['dims', (v) => v.setInt32(4, -5, true), /invalid dimensions NX=4 NY=-5 NZ=1/],
      ['nsymbt', (v) => v.setInt32(92, -1, true), /NSYMBT=-1/],
      ['axes', (v) => v.setInt32(64, 3, true), /MAPC,MAPR,MAPS = 3,2,3/],
    ];
    for (const [name, corrupt, message] of cases) {
      const path = join(dir, `bad-${name}.mrc`);
      const header = encodeMrcHeader({ nx: 4, ny: 4, nz: 1, mode: 2, dmin: 0, dmax: 0, dmean: 0, rms: 0 });
      corrupt(new DataView(header.buffer));
      await writeFile(path, Buffer.concat([header, Buffer.alloc(64)]));
      await expect(readMrcHeader(path)).rejects.toThrow(message);
    }
    const short = join(dir, 'short.mrc');
    await writeFile(short, Buffer.alloc(100));
    await expect(MrcStack.open(short)).rejects.toThrow(
      `${short}: file has 100 bytes, fewer than the 1024-byte MRC header`,
    );
  });

  it('the writer leaves nothing under the final name until close, and refuses missing planes', async () => {
    const path = join(dir, 'partial.mrc');
    const w = await MrcWriter.create(path, { width: 2, height: 2, depth: 2, mode: 2 });
    await w.writePlane(0, [1, 2, 3, 4]);
    await expect(readFile(path)).rejects.toThrow(/ENOENT/);
    await expect(w.close()).rejects.toThrow('only 1 of 2 planes were written');
    await expect(readFile(path)).rejects.toThrow(/ENOENT/);
  });

  it('float16 conversion matches IEEE half rounding', () => {
    const values = [0, 1, -2.5, 65504, 1e-7, 0.1, 3.14159, -0.0001, 70000];
    const back = Array.from(decodeFloat16(encodeFloat16(values)));
    expect(back[0]).toBe(0);
    expect(back[1]).toBe(1);
    expect(back[2]).toBe(-2.5);
    expect(back[3]).toBe(65504);
    expect(back[5]).toBeCloseTo(0.0999755859375, 12);
    expect(back[6]).toBeCloseTo(3.140625, 12);
    expect(back[8]).toBe(Infinity);
  });

  const py = findPython(['mrcfile', 'numpy']);
  it.skipIf(!py)('agrees with mrcfile both ways, extended headers and float16 included', async () => {
    const ours = join(dir, 'ours16.mrc');
    await writeMrc(ours, [plane(0, 12), plane(1, 12)], {
      width: W,
      height: H,
      mode: 12,
      pixelSize: { x: 0.8, y: 0.8, z: 0.8 },
    });
    const out = runPython(
      py!,
      `import mrcfile, sys, numpy as np
m = mrcfile.open(sys.argv[1], permissive=False)
print(m.data.dtype, m.data.shape, float(m.voxel_size.x), float(m.data[1].astype(np.float64).sum()))
for mode, dt in [(0, np.int8), (1, np.int16), (2, np.float32), (6, np.uint16), (12, np.float16)]:
    a = (np.arange(3*5*7).reshape(3,5,7) % 100).astype(dt)
    with mrcfile.new(sys.argv[2] + f'/py{mode}.mrc', overwrite=True) as f:
        f.set_data(a)
        f.set_extended_header(np.zeros(37, dtype=np.uint8))
        f.voxel_size = 1.5
`,
      [ours, dir],
    );
    const [dtype, shape, vs, sum] = out.trim().split(/ (?![^(]*\))/);
    expect(dtype).toBe('float16');
    expect(shape).toBe(`(2, ${H}, ${W})`);
    expect(Number(vs)).toBeCloseTo(0.8, 5);
    expect(Number(sum)).toBeCloseTo(
      plane(1, 12).reduce((a, b) => a + b, 0),
      1,
    );
    for (const mode of [0, 1, 2, 6, 12]) {
      const s = await MrcStack.open(join(dir, `py${mode}.mrc`));
      expect(s.header.nsymbt).toBe(37);
      expect(s.pixelSize?.x).toBeCloseTo(1.5, 5);
      expect(Array.from(await s.readPlane(2))).toEqual(Array.from({ length: 35 }, (_, i) => (70 + i) % 100));
      await s.close();
    }
  });
});
