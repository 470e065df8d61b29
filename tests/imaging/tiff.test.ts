import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageFormatError } from '../../src/imaging/errors.js';
import { TiffStack } from '../../src/imaging/formats/tiff.js';
import { writeTiffStack } from '../fixtures/imaging/tiffWriter.js';
import { findPython, runPython } from '../fixtures/imaging/python.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-tiff-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const W = 40;
const H = 24;
const value = (z: number, i: number) => (i * 3 + z * 1000) % 65000;

describe('TIFF stacks', () => {
  it('reads pages one at a time with ImageJ pixel size and spacing', async () => {
    const path = join(dir, 'ij.tif');
    await writeTiffStack(
      path,
      { width: W, height: H, depth: 5, dtype: 'uint16', pixelSizeUm: 0.25, zSpacingUm: 2 },
      (z) => Uint16Array.from({ length: W * H }, (_, i) => value(z, i)),
    );
    const s = await TiffStack.open(path);
    expect([s.width, s.height, s.depth, s.dtype]).toEqual([W, H, 5, 'uint16']);
    expect(s.pixelSize).toEqual({ x: 0.25, y: 0.25, z: 2, unit: 'micrometer' });
    for (const z of [4, 0, 2]) {
      const p = await s.readPlane(z);
      expect(p).toBeInstanceOf(Uint16Array);
      expect(Array.from(p)).toEqual(Array.from({ length: W * H }, (_, i) => value(z, i)));
    }
    await s.close();
  });

  it('reads float32 pages and reports no pixel size when the file has none', async () => {
    const path = join(dir, 'f.tif');
    await writeTiffStack(path, { width: W, height: H, depth: 2, dtype: 'float32' }, (z) =>
      Float32Array.from({ length: W * H }, (_, i) => i / 8 - z),
    );
    const s = await TiffStack.open(path);
    expect(s.dtype).toBe('float32');
    expect(s.pixelSize).toBeUndefined();
    expect((await s.readPlane(1))[17]).toBe(17 / 8 - 1);
    await s.close();
  });

  it('refuses a truncated stack, naming the page and the sizes', async () => {
    const path = join(dir, 'trunc.tif');
    await writeTiffStack(path, { width: W, height: H, depth: 3, dtype: 'uint16' }, (z) =>
      new Uint16Array(W * H).fill(z),
    );
    // Cut inside the last page's pixels: its IFD is gone, so the stack has 2 readable pages; cut the second page's pixels too.
    const pageBytes = W * H * 2;
    await truncate(path, 8 + pageBytes + 300);
    const err = await (async () => {
      const s = await TiffStack.open(path);
      try {
        for (let z = 0; z < s.depth; z++) await s.readPlane(z);
      } finally {
        await s.close();
      }
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageFormatError);
    expect((err as Error).message).toMatch(new RegExp(`^${path}: `));
    expect((err as Error).message).toMatch(/truncated|corrupt|not a readable TIFF/);
  });

  it('refuses a file that is not a TIFF', async () => {
    const path = join(dir, 'junk.tif');
    await writeFile(path, Buffer.from('this is not a tiff file at all'));
    await expect(TiffStack.open(path)).rejects.toThrow(new RegExp(`^${path}: not a readable TIFF file`));
  });

  const py = findPython(['tifffile', 'numpy']);
  it.skipIf(!py)(
    'reads stacks written by tifffile: zlib-compressed, tiled, BigTIFF, int16, resolution in cm',
    async () => {
      runPython(
        py!,
        `import tifffile, numpy as np, sys
d = sys.argv[1]
a = (np.arange(4*70*50).reshape(4,70,50) % 30000).astype(np.uint16)
tifffile.imwrite(d + '/zlib.tif', a, compression='zlib', photometric='minisblack')
tifffile.imwrite(d + '/tiled.tif', a, tile=(32, 32), photometric='minisblack')
tifffile.imwrite(d + '/big.tif', a.astype(np.int16) - 5000, bigtiff=True, photometric='minisblack')
tifffile.imwrite(d + '/cm.tif', a.astype(np.float32), resolution=(20000, 20000), resolutionunit='CENTIMETER', photometric='minisblack')
`,
        [dir],
      );
      const expected = (z: number, t: (v: number) => number = (v) => v) =>
        Array.from({ length: 70 * 50 }, (_, i) => t((z * 3500 + i) % 30000));
      for (const name of ['zlib', 'tiled']) {
        const s = await TiffStack.open(join(dir, `${name}.tif`));
        expect([s.width, s.height, s.depth]).toEqual([50, 70, 4]);
        expect(Array.from(await s.readPlane(3))).toEqual(expected(3));
        await s.close();
      }
      const big = await TiffStack.open(join(dir, 'big.tif'));
      expect(big.dtype).toBe('int16');
      expect(Array.from(await big.readPlane(2))).toEqual(expected(2, (v) => v - 5000));
      await big.close();
      const cm = await TiffStack.open(join(dir, 'cm.tif'));
      expect(cm.pixelSize?.unit).toBe('micrometer');
      expect(cm.pixelSize?.x).toBeCloseTo(0.5, 9);
      await cm.close();
    },
  );
});
