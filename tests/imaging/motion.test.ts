import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MrcStack, MrcWriter } from '../../src/imaging/formats/mrc.js';
import { criticalExposure, doseFilter } from '../../src/imaging/kernels/doseWeight.js';
import { correctMotion, writeMotionOutputs } from '../../src/imaging/kernels/motion.js';
import { syntheticMovie, type SyntheticMovie } from '../fixtures/imaging/synthetic.js';
import { writeTiffStack } from '../fixtures/imaging/tiffWriter.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-motion-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** RMS distance between recovered shifts and the truth (−drift relative to frame 0), after removing their mean offset. */
function rmsError(movie: SyntheticMovie, shifts: { x: number; y: number }[]): number {
  const d0 = movie.drift[0]!;
  const ex = shifts.map((s, i) => s.x + (movie.drift[i]!.x - d0.x));
  const ey = shifts.map((s, i) => s.y + (movie.drift[i]!.y - d0.y));
  const mx = ex.reduce((a, b) => a + b, 0) / ex.length;
  const my = ey.reduce((a, b) => a + b, 0) / ey.length;
  return Math.sqrt(ex.reduce((a, e, i) => a + (e - mx) ** 2 + (ey[i]! - my) ** 2, 0) / ex.length);
}

async function writeMovieMrc(path: string, movie: SyntheticMovie): Promise<void> {
  const w = await MrcWriter.create(path, {
    width: movie.size,
    height: movie.size,
    depth: movie.frames,
    mode: 6,
    pixelSize: { x: 1, y: 1, z: 1 },
  });
  for (let i = 0; i < movie.frames; i++) await w.writePlane(i, await movie.frame(i));
  await w.close();
}

describe('motion correction', () => {
  it('recovers a drift of ~12 px within 0.2 px RMS from a Poisson movie at 2 e⁻/px/frame (MRC)', async () => {
    const movie = await syntheticMovie(384, 16, { seed: 11, dose: 2, contrast: 0.25, totalDrift: 12 });
    const path = join(dir, 'movie.mrc');
    await writeMovieMrc(path, movie);
    const progress: number[] = [];
    const r = await correctMotion(path, { bFactor: 100 }, { onProgress: (f) => progress.push(f) });
    expect(r.binning).toBe(1);
    expect(r.shifts[0]).toEqual({ x: 0, y: 0 });
    const err = rmsError(movie, r.shifts);
    expect(err, `RMS error ${err.toFixed(3)} px`).toBeLessThan(0.2);
    expect(progress.at(-1)).toBe(1);
    // The aligned sum is sharper than the plain sum: more power at mid frequencies.
    expect(r.sum).toHaveLength(384 * 384);
    await writeMotionOutputs(r, { sumMrc: join(dir, 'sum.mrc'), trajectoryJson: join(dir, 'shifts.json') });
    const traj = JSON.parse(await readFile(join(dir, 'shifts.json'), 'utf8')) as {
      shifts: { frame: number; x: number; y: number }[];
      frames: number;
    };
    expect(traj.frames).toBe(16);
    expect(traj.shifts[5]!.x).toBeCloseTo(r.shifts[5]!.x, 3);
    const s = await MrcStack.open(join(dir, 'sum.mrc'));
    expect([s.width, s.height, s.depth]).toEqual([384, 384, 1]);
    await s.close();
  });

  it('aligns a TIFF movie on a binned grid and dose-weights the sum', async () => {
    const movie = await syntheticMovie(384, 10, { seed: 5, dose: 3, contrast: 0.3, totalDrift: 20 });
    const path = join(dir, 'movie.tif');
    await writeTiffStack(path, { width: 384, height: 384, depth: 10, dtype: 'uint16' }, (i) =>
      movie.frame(i),
    );
    const plain = await correctMotion(path, { alignSize: 192, pixelSize: 1 });
    expect(plain.binning).toBe(2);
    expect(rmsError(movie, plain.shifts)).toBeLessThan(0.35);
    const weighted = await correctMotion(path, {
      alignSize: 192,
      pixelSize: 1,
      doseWeighting: { dosePerFrame: 3, voltageKv: 300 },
    });
    // Same mean (the zero frequency is untouched), different sum.
    const mean = (a: Float32Array) => a.reduce((x, y) => x + y, 0) / a.length;
    expect(mean(weighted.sum)).toBeCloseTo(mean(plain.sum), 2);
    let diff = 0;
    for (let i = 0; i < plain.sum.length; i++) diff += Math.abs(plain.sum[i]! - weighted.sum[i]!);
    expect(diff / plain.sum.length).toBeGreaterThan(0.05);
  });

  it('critical exposure and the dose filter follow the published curve', () => {
    // Nₑ(k) = 0.245 k^−1.665 + 2.81 e⁻/Å² at 300 kV: at 1/4 Å⁻¹, ≈ 4.6; at 200 kV × 0.8.
    expect(criticalExposure(0.25, 300)).toBeCloseTo(0.245 * 0.25 ** -1.665 + 2.81, 9);
    expect(criticalExposure(0.25, 200)).toBeCloseTo(0.8 * (0.245 * 0.25 ** -1.665 + 2.81), 9);
    expect(doseFilter(0, 50, 300)).toBe(1);
    expect(doseFilter(0.25, 2 * criticalExposure(0.25, 300), 300)).toBeCloseTo(Math.exp(-1), 9);
  });

  it('refuses a one-frame movie and bad options', async () => {
    const one = join(dir, 'one.mrc');
    const w = await MrcWriter.create(one, { width: 64, height: 64, depth: 1, mode: 2 });
    await w.writePlane(0, new Float32Array(64 * 64));
    await w.close();
    await expect(correctMotion(one)).rejects.toThrow(`${one}: a movie needs at least 2 frames, it has 1`);
    await expect(correctMotion(join(dir, 'movie.mrc'), { maxShift: -1 })).rejects.toThrow(
      'maxShift = -1 is not allowed: must be a positive number',
    );
  });

  it('on two threads: the same shifts bit for bit, the same sum to float32 rounding, dose-weighted too', async () => {
    const movie = await syntheticMovie(512, 8, { seed: 3, dose: 2, contrast: 0.25, totalDrift: 10 });
    const path = join(dir, 'threads.mrc');
    await writeMovieMrc(path, movie);
    // 512 px with alignSize 256: a binned grid, so the spectra are binned in the workers too, and a
    // 128 px coarse grid that this thread crops for both.
    const opts = { bFactor: 100, alignSize: 256, doseWeighting: { dosePerFrame: 2, voltageKv: 300 } };
    const one = await correctMotion(path, opts);
    const progress: number[] = [];
    const two = await correctMotion(path, { ...opts, threads: 2 }, { onProgress: (f) => progress.push(f) });
    expect([one.threads, two.threads]).toEqual([1, 2]);
    expect(two.shifts).toEqual(one.shifts);
    expect(two.iterations).toBe(one.iterations);
    expect(rmsError(movie, two.shifts)).toBeLessThan(0.35);
    let peak = 0;
    let diff = 0;
    for (let i = 0; i < one.sum.length; i++) {
      peak = Math.max(peak, Math.abs(one.sum[i]!));
      diff = Math.max(diff, Math.abs(one.sum[i]! - two.sum[i]!));
    }
    expect(diff / peak, `largest difference ${diff} against ${peak}`).toBeLessThan(1e-5);
    expect(progress.at(-1)).toBe(1);
    expect(progress.every((p, i) => i === 0 || p >= progress[i - 1]!)).toBe(true);
  }, 60_000);

  it('refuses threads it cannot use', async () => {
    const path = join(dir, 'movie.mrc');
    await expect(correctMotion(path, { threads: 0 })).rejects.toThrow(
      'threads = 0 is not allowed: must be an integer from 1 to 64',
    );
    const stack = await MrcStack.open(path);
    await expect(correctMotion(stack, { threads: 2 })).rejects.toThrow(
      'threads = 2 needs the movie as a file path (each thread opens it)',
    );
    await stack.close();
  });

  it('a cancel mid-alignment ends its worker thread before it returns', async () => {
    // Linux tells a process's thread count; elsewhere the cancel is still checked.
    const threadCount = () =>
      existsSync('/proc/self/status')
        ? Number(/^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'))![1])
        : 0;
    const before = threadCount();
    const ac = new AbortController();
    let during = 0;
    const err = await correctMotion(
      join(dir, 'movie.mrc'),
      { threads: 2, iterations: 100, tolerance: 1e-9 },
      {
        signal: ac.signal,
        onProgress: (f, m) => {
          if (m.startsWith('iteration') && !ac.signal.aborted) {
            during = threadCount();
            ac.abort();
          }
        },
      },
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe('motion correction aborted');
    if (before > 0) {
      expect(during, 'the worker was running').toBeGreaterThanOrEqual(before + 1);
      expect(threadCount()).toBe(before);
    }
  }, 60_000);

  it('stops between frames when its signal fires', async () => {
    const ac = new AbortController();
    const err = await correctMotion(
      join(dir, 'movie.mrc'),
      {},
      { signal: ac.signal, onProgress: () => ac.abort() },
    ).catch((e: unknown) => e);
    expect((err as Error).message).toBe('motion correction aborted');
  });
});
