import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertToOmeZarr } from '../../src/imaging/convert/convertToOmeZarr.js';
import { writeMrc } from '../../src/imaging/formats/mrc.js';
import { OmeZarrReader } from '../../src/imaging/formats/omeZarr.js';
import { findPython, runPython } from '../fixtures/imaging/python.js';
import { writeTiffStack } from '../fixtures/imaging/tiffWriter.js';
import { expectSameValues } from './arrays.js';
import { ngff04Problems } from './omeZarrCheck.js';

const ROOT = join(import.meta.dirname, '../..');
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-convert-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const W = 600;
const H = 520;
const D = 3;
const pixel = (z: number, i: number) => (i * 37 + z * 9973 + ((i * i) % 7919)) % 65536;

/** Reference 2×2 mean, written plainly: each output pixel averages the input pixels it covers. */
function reference(src: number[], w: number, h: number): { data: number[]; w: number; h: number } {
  const w2 = Math.ceil(w / 2);
  const h2 = Math.ceil(h / 2);
  const data: number[] = [];
  for (let y = 0; y < h2; y++) {
    for (let x = 0; x < w2; x++) {
      const vals: number[] = [];
      for (const [dy, dx] of [
        [0, 0],
        [0, 1],
        [1, 0],
        [1, 1],
      ] as const) {
        if (2 * y + dy < h && 2 * x + dx < w) vals.push(src[(2 * y + dy) * w + 2 * x + dx]!);
      }
      data.push(Math.floor(vals.reduce((a, b) => a + b, 0) / vals.length + 0.5));
    }
  }
  return { data, w: w2, h: h2 };
}

async function zarrFiles(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).filter((f) =>
    /^\d+\/\d+\/\d+\/\d+$/.test(f.replaceAll('\\', '/')),
  );
}

describe('convertToOmeZarr', () => {
  const tif = () => join(dir, 'stack.tif');
  beforeAll(async () => {
    await writeTiffStack(
      tif(),
      { width: W, height: H, depth: D, dtype: 'uint16', pixelSizeUm: 0.5, zSpacingUm: 2 },
      (z) => Uint16Array.from({ length: W * H }, (_, i) => pixel(z, i)),
    );
  });

  it('TIFF → OME-Zarr 0.4 pyramid: read back equal, every level a 2×2 mean, metadata valid', async () => {
    const out = join(dir, 'out.zarr');
    const progress: number[] = [];
    const r = await convertToOmeZarr(
      tif(),
      out,
      { chunks: [1, 128, 128] },
      { onProgress: (f) => progress.push(f) },
    );
    expect(r.levels.map((l) => l.shape)).toEqual([
      [3, 520, 600],
      [3, 260, 300],
      [3, 130, 150],
    ]);
    expect(progress.filter((f) => f < 1)).toHaveLength(D - 1);
    expect(progress.at(-1)).toBe(1);
    const z = await OmeZarrReader.open(out);
    expect(z.levels).toBe(3);
    for (let k = 0; k < D; k++) {
      let expected = { data: Array.from({ length: W * H }, (_, i) => pixel(k, i)), w: W, h: H };
      for (let l = 0; l < 3; l++) {
        if (l > 0) expected = reference(expected.data, expected.w, expected.h);
        const got = await z.readPlane(l, k);
        expect(got).toBeInstanceOf(Uint16Array);
        expectSameValues(got, expected.data, `level ${l} plane ${k}`);
      }
    }
    expect(
      ngff04Problems(
        z.attrs,
        [0, 1, 2].map((l) => z.shape(l)),
      ),
    ).toEqual([]);
    const ms = (z.attrs.multiscales as { axes: unknown; datasets: unknown }[])[0]!;
    expect(ms.axes).toEqual([
      { name: 'z', type: 'space', unit: 'micrometer' },
      { name: 'y', type: 'space', unit: 'micrometer' },
      { name: 'x', type: 'space', unit: 'micrometer' },
    ]);
    expect(ms.datasets).toEqual([
      {
        path: '0',
        coordinateTransformations: [
          { type: 'scale', scale: [2, 0.5, 0.5] },
          { type: 'translation', translation: [0, 0, 0] },
        ],
      },
      {
        path: '1',
        coordinateTransformations: [
          { type: 'scale', scale: [2, 1, 1] },
          { type: 'translation', translation: [0, 0.25, 0.25] },
        ],
      },
      {
        path: '2',
        coordinateTransformations: [
          { type: 'scale', scale: [2, 2, 2] },
          { type: 'translation', translation: [0, 0.75, 0.75] },
        ],
      },
    ]);
    // 5×5 + 3×3 + 2×2 chunks per plane.
    expect(r.chunksWritten).toBe(D * (25 + 9 + 4));
    expect((await zarrFiles(out)).length).toBe(D * 38);
  });

  const py = findPython(['zarr', 'numcodecs', 'numpy']);
  it.skipIf(!py)(
    'python3-zarr (Zarr v2) reads every level back equal, Blosc and zlib chunks alike',
    async () => {
      for (const compression of ['blosc-lz4', 'zlib'] as const) {
        const out = join(dir, `py-${compression}.zarr`);
        await convertToOmeZarr(tif(), out, { chunks: [2, 100, 256], compression });
        const ours = await OmeZarrReader.open(out);
        const sums = [];
        for (let l = 0; l < 3; l++) {
          let s = 0;
          for (let k = 0; k < D; k++) for (const v of await ours.readPlane(l, k)) s += v;
          sums.push(s);
        }
        const text = runPython(
          py!,
          `import zarr, sys, json
g = zarr.open_group(sys.argv[1], mode='r')
ms = g.attrs['multiscales'][0]
print(json.dumps([[list(g[d['path']].shape), int(g[d['path']][:].astype('int64').sum()), str(g[d['path']].dtype), g[d['path']].compressor.codec_id] for d in ms['datasets']]))`,
          [out],
        );
        const py3 = JSON.parse(text) as [number[], number, string, string][];
        expect(py3.map((x) => x[0])).toEqual([0, 1, 2].map((l) => ours.shape(l)));
        expect(py3.map((x) => x[1])).toEqual(sums);
        expect(py3.map((x) => x[2])).toEqual(['uint16', 'uint16', 'uint16']);
        expect(py3[0]![3]).toBe(compression === 'zlib' ? 'zlib' : 'blosc');
      }
    },
  );

  it('MRC float32 with depth not a multiple of the chunk depth; pixel size in Å from the header', async () => {
    const mrc = join(dir, 'vol.mrc');
    const planes = Array.from({ length: 5 }, (_, z) =>
      Float32Array.from({ length: 300 * 280 }, (_, i) => Math.sin(i / 17 + z) * 100),
    );
    await writeMrc(mrc, planes, { width: 300, height: 280, mode: 2, pixelSize: { x: 1.1, y: 1.1, z: 1.1 } });
    const out = join(dir, 'vol.zarr');
    const r = await convertToOmeZarr(mrc, out, { chunks: [2, 64, 64], compression: 'blosc-zstd' });
    expect(r.blocks).toBe(3);
    const z = await OmeZarrReader.open(out);
    expectSameValues(await z.readPlane(0, 4), planes[4]!);
    const lvl1 = await z.readPlane(1, 4);
    const p = planes[4]!;
    expect(lvl1[151]).toBeCloseTo(
      (p[2 * 300 + 2]! + p[2 * 300 + 3]! + p[3 * 300 + 2]! + p[3 * 300 + 3]!) / 4,
      4,
    );
    const ms = (
      z.attrs.multiscales as {
        axes: { unit: string }[];
        datasets: { coordinateTransformations: { scale: number[] }[] }[];
      }[]
    )[0]!;
    expect(ms.axes[2]!.unit).toBe('angstrom');
    expect(ms.datasets[1]!.coordinateTransformations[0]!.scale[2]).toBeCloseTo(2.2, 5);
    expect(
      ngff04Problems(
        z.attrs,
        [0, 1].map((l) => z.shape(l)),
      ),
    ).toEqual([]);
  });

  it('refuses bad options and an output that holds something else', async () => {
    await expect(convertToOmeZarr(tif(), join(dir, 'x.zarr'), { chunks: [1, 0, 64] })).rejects.toThrow(
      'chunks = [1,0,64] is not allowed: must be [z, y, x], positive integers up to 65536',
    );
    await expect(
      convertToOmeZarr(tif(), join(dir, 'x.zarr'), { compression: 'lzma' as never }),
    ).rejects.toThrow(
      'compression = "lzma" is not allowed: must be one of blosc-lz4, blosc-zstd, zlib, none',
    );
    await expect(convertToOmeZarr(tif(), join(dir, 'out.zarr'), { chunks: [1, 64, 64] })).rejects.toThrow(
      /already holds a conversion of another input or with other options; pass overwrite: true/,
    );
  });

  it('resumes after a real SIGKILL mid-conversion: verified blocks are skipped, the result is whole', async () => {
    const depth = 12;
    const input = join(dir, 'crash.tif');
    await writeTiffStack(input, { width: 300, height: 300, depth, dtype: 'uint16' }, (z) =>
      Uint16Array.from({ length: 300 * 300 }, (_, i) => pixel(z, i)),
    );
    const out = join(dir, 'crash.zarr');
    const child = spawn(
      process.execPath,
      [join(ROOT, 'tests/fixtures/imaging/convertChild.mjs'), input, out, '[1,100,100]', '150'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let buffered = '';
    const killedAt = await new Promise<number>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        buffered += d.toString();
        const m = [...buffered.matchAll(/plane (\d+)\/12\n/g)].at(-1);
        if (m && Number(m[1]) >= depth / 2 && child.exitCode === null && !child.killed) {
          child.kill('SIGKILL');
          resolve(Number(m[1]));
        }
      });
      child.on('exit', (code, sig) =>
        sig === 'SIGKILL'
          ? undefined
          : reject(new Error(`child exited ${code} before the kill: ${buffered}`)),
      );
    });
    await new Promise((r) => child.once('exit', r));
    expect(killedAt).toBeGreaterThanOrEqual(6);
    const chunksBefore = (await zarrFiles(out)).length;
    const perBlock = 9 + 4; // 3×3 chunks at level 0, 2×2 at level 1 (150×150)
    expect(chunksBefore).toBeGreaterThanOrEqual(5 * perBlock);
    expect(chunksBefore).toBeLessThan(depth * perBlock);
    const log = await readFile(join(out, '.jobd-progress'), 'utf8');
    const recorded = log.split('\n').filter((l) => l.startsWith('block ')).length;
    expect(recorded).toBeGreaterThanOrEqual(5);
    expect(recorded).toBeLessThan(depth);

    const r = await convertToOmeZarr(input, out, { chunks: [1, 100, 100] });
    expect(r.blocksSkipped).toBe(recorded);
    expect(r.chunksWritten).toBe((depth - recorded) * perBlock);
    const z = await OmeZarrReader.open(out);
    for (let k = 0; k < depth; k++) {
      expectSameValues(
        await z.readPlane(0, k),
        Array.from({ length: 300 * 300 }, (_, i) => pixel(k, i)),
      );
    }
    expect((await readFile(join(out, '.jobd-progress'), 'utf8')).endsWith('complete\n')).toBe(true);
  });

  it('re-verifies recorded blocks: a damaged chunk makes its block be written again', async () => {
    const out = join(dir, 'crash.zarr');
    const victim = join(out, '0/3/1/1');
    expect(existsSync(victim)).toBe(true);
    const { writeFile } = await import('node:fs/promises');
    await writeFile(victim, Buffer.from('garbage'));
    const r = await convertToOmeZarr(join(dir, 'crash.tif'), out, { chunks: [1, 100, 100] });
    expect(r.blocksSkipped).toBe(11);
    expect(r.chunksWritten).toBe(13);
    const z = await OmeZarrReader.open(out);
    expectSameValues(
      await z.readPlane(0, 3),
      Array.from({ length: 300 * 300 }, (_, i) => pixel(3, i)),
    );
  });

  it('stops between planes when its signal fires', async () => {
    const ac = new AbortController();
    const err = await convertToOmeZarr(
      tif(),
      join(dir, 'abort.zarr'),
      {},
      {
        signal: ac.signal,
        onProgress: () => ac.abort(new Error('cancelled')),
      },
    ).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect((err as Error).message).toBe('conversion aborted');
  });
});
