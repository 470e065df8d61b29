import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MrcStack } from '../../src/imaging/formats/mrc.js';
import { powerSpectrum, writePowerSpectrum } from '../../src/imaging/kernels/powerSpectrum.js';
import { gaussian, rng } from '../fixtures/imaging/synthetic.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-ps-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('powerSpectrum', () => {
  it('puts a cosine at its frequency, centred and symmetric', async () => {
    const n = 256;
    // 20 cycles along x and 12 along y over the image.
    const img = Float32Array.from({ length: n * n }, (_, i) =>
      Math.cos(2 * Math.PI * ((20 * (i % n)) / n + (12 * Math.floor(i / n)) / n)),
    );
    const ps = await powerSpectrum(img, n, n, { window: 'none' });
    expect(ps.size).toBe(n);
    expect(ps.tilesUsed).toBe(1);
    let max = 0;
    let at = -1;
    ps.power.forEach((p, i) => {
      if (p > max) [max, at] = [p, i];
    });
    const c = n / 2;
    const peaks = [(c + 12) * n + c + 20, (c - 12) * n + c - 20];
    expect(peaks).toContain(at);
    expect(ps.power[peaks[0]!]).toBeCloseTo(ps.power[peaks[1]!]!, 3);
    expect(ps.power[(c + 12) * n + c - 20]!).toBeLessThan(max * 1e-6);
  });

  it('averages half-overlapping tiles: white noise gets a flat, low-variance spectrum', async () => {
    const w = 640;
    const h = 512;
    const g = gaussian(rng(5));
    const img = Float32Array.from({ length: w * h }, g);
    const one = await powerSpectrum(img, w, h, { tileSize: 128, tiles: 1 });
    const many = await powerSpectrum(img, w, h, { tileSize: 128 });
    expect(many.tilesUsed).toBe(9 * 7);
    const cv = (p: Float32Array) => {
      const v = Array.from(p).filter((_, i) => i !== 64 * 128 + 64);
      const m = v.reduce((a, b) => a + b, 0) / v.length;
      return Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length) / m;
    };
    expect(cv(one.power)).toBeGreaterThan(0.8);
    expect(cv(many.power)).toBeLessThan(0.3);
  });

  it('writes the log spectrum as MRC and PNG', async () => {
    const g = gaussian(rng(9));
    const ps = await powerSpectrum(Float32Array.from({ length: 300 * 300 }, g), 300, 300, { tileSize: 96 });
    await writePowerSpectrum(ps, { mrc: join(dir, 'ps.mrc'), png: join(dir, 'ps.png') });
    const m = await MrcStack.open(join(dir, 'ps.mrc'));
    expect([m.width, m.height, m.depth]).toEqual([96, 96, 1]);
    const plane = await m.readPlane(0);
    expect(plane[10]).toBeCloseTo(Math.log(ps.power[10]!), 4);
    await m.close();
    const png = PNG.sync.read(await readFile(join(dir, 'ps.png')));
    expect([png.width, png.height]).toEqual([96, 96]);
  });

  it('refuses a tile size PFFFT cannot do', async () => {
    await expect(powerSpectrum(new Float32Array(400 * 400), 400, 400, { tileSize: 100 })).rejects.toThrow(
      'tileSize = 100 is not allowed',
    );
  });
});
