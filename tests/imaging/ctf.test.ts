import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimateCtf, writeCtfDiagnostic } from '../../src/imaging/kernels/ctf.js';
import { electronWavelength } from '../../src/imaging/kernels/ctfModel.js';
import { syntheticMicrograph, type TrueCtf } from '../fixtures/imaging/synthetic.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-ctf-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const scope = { voltageKv: 300, csMm: 2.7, amplitudeContrast: 0.07, pixelSize: 1.5 };
const SIZE = 1024;

// Defocus 0.8–3.5 µm; astigmatism up to 0.2 µm at various angles (U ≥ V, angle of U from x).
const CASES: [number, number, number][] = [
  [8000, 8000, 0],
  [12000, 11000, 30],
  [16500, 15000, 120],
  [20000, 18000, 75],
  [25000, 24000, 160],
  [30000, 28500, 10],
  [35000, 33000, 55],
];

function angleError(a: number, b: number): number {
  const d = Math.abs(a - b) % 180;
  return Math.min(d, 180 - d);
}

describe('CTF estimation', () => {
  it('electron wavelength: 0.0197 Å at 300 kV, 0.0251 Å at 200 kV', () => {
    expect(electronWavelength(300)).toBeCloseTo(0.019687, 5);
    expect(electronWavelength(200)).toBeCloseTo(0.025079, 5);
  });

  for (const [u, v, angle] of CASES) {
    it(`recovers defocus ${u / 1e4}/${v / 1e4} µm at ${angle}°`, async () => {
      const truth: TrueCtf = { ...scope, defocusU: u, defocusV: v, angleDeg: angle, bFactor: 60 };
      const img = await syntheticMicrograph(SIZE, truth, u + v + angle);
      const r = await estimateCtf(img, SIZE, SIZE, {
        ...scope,
        tileSize: 512,
        minResolution: 30,
        maxResolution: 5,
      });
      const tol = (d: number) => Math.max(0.02 * d, 500);
      expect(Math.abs(r.defocusU - u), `defocus U ${r.defocusU.toFixed(0)} vs ${u}`).toBeLessThan(tol(u));
      expect(Math.abs(r.defocusV - v), `defocus V ${r.defocusV.toFixed(0)} vs ${v}`).toBeLessThan(tol(v));
      if (u - v >= 1000)
        expect(angleError(r.astigmatismAngle, angle), `angle ${r.astigmatismAngle.toFixed(1)}`).toBeLessThan(
          5,
        );
      expect(r.score).toBeGreaterThan(0.2);
      expect(r.fitResolution).toBeLessThan(8);
      expect(r.fitResolution).toBeGreaterThanOrEqual(2 * scope.pixelSize - 1e-9);
    });
  }

  it('writes a diagnostic PNG (observed half, fitted half) and reports progress', async () => {
    const truth: TrueCtf = { ...scope, defocusU: 15000, defocusV: 14000, angleDeg: 40, bFactor: 60 };
    const img = await syntheticMicrograph(1024, truth, 3);
    const progress: number[] = [];
    const r = await estimateCtf(
      img,
      1024,
      1024,
      { ...scope, tileSize: 256 },
      { onProgress: (f) => progress.push(f) },
    );
    const path = join(dir, 'diag.png');
    await writeCtfDiagnostic(path, r, scope);
    const png = PNG.sync.read(await readFile(path));
    expect([png.width, png.height]).toEqual([256, 256]);
    expect(progress.at(-1)).toBe(1);
    expect(progress.every((p, i) => i === 0 || p >= progress[i - 1]!)).toBe(true);
  });

  it('refuses bad microscope parameters, naming them', async () => {
    const img = new Float32Array(512 * 512);
    await expect(estimateCtf(img, 512, 512, { ...scope, pixelSize: 0 })).rejects.toThrow(
      'pixelSize = 0 is not allowed: must be a positive number',
    );
    await expect(estimateCtf(img, 512, 512, { ...scope, amplitudeContrast: 1.5 })).rejects.toThrow(
      'amplitudeContrast = 1.5 is not allowed: must be in [0, 1)',
    );
  });

  it('stops when its signal fires', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(
      estimateCtf(new Float32Array(512 * 512), 512, 512, scope, { signal: ac.signal }),
    ).rejects.toThrow('power spectrum aborted');
  });
});
