/**
 * Motion correction of a movie (MRC or TIFF stack of frames): whole-frame shifts by iterative
 * leave-one-out cross-correlation (motionAlign.ts), coarse to fine (motionCoarse.ts), then the
 * aligned sum, optionally dose-weighted.
 *
 * Two passes over the file, one frame in memory at a time: the first keeps only each frame's
 * alignment spectrum (binned to at most `alignSize` per side by summing blocks of pixels, then
 * transformed); the second shifts every full frame in Fourier space and accumulates the sum's
 * spectrum. Memory is about
 * 1.25 · frames · wa · ha · 4 bytes for the alignment spectra (wa × ha ≤ alignSize², and their
 * coarse crop) plus about four
 * full-frame buffers of W · H · 4 bytes (FFT memory, the sum's spectrum, a padded frame when the
 * size needs padding) — independent of the movie's length apart from the first term.
 */
import { writeFile, rename } from 'node:fs/promises';
import { openStack } from '../formats/openStack.js';
import { MrcWriter } from '../formats/mrc.js';
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import type { ImageStack, PlaneArray } from '../types.js';
import type { DoseWeighting } from './doseWeight.js';
import {
  AlignSpectrumMaker,
  alignGrid,
  alignSpectrumLength,
  finishSum,
  FrameSummer,
} from './motionFrames.js';
import { alignSpectra } from './motionCoarse.js';
import { correctMotionThreaded } from './motionThreads.js';

export interface MotionOptions {
  /** Å per pixel: from the file when it says, else required for the B-factor and dose weighting. */
  pixelSize?: number;
  /** Å², the alignment low-pass exp(−B k²/4); default 150. */
  bFactor?: number;
  /** Largest shift searched per step, in input pixels; default 40. */
  maxShift?: number;
  /** Default 10 iterations, stopping early when no shift changes by more than `tolerance` px (default 0.01). */
  iterations?: number;
  tolerance?: number;
  /** Largest side of the alignment grid; frames are binned by powers of two to fit; default 1024. */
  alignSize?: number;
  doseWeighting?: DoseWeighting;
  /**
   * Worker threads (default 1: this thread only). More than one needs the movie as a path (each
   * thread opens it); the shifts are bit-identical to a one-thread run, the sum equal to float32
   * rounding.
   */
  threads?: number;
}

export interface MotionResult {
  width: number;
  height: number;
  frames: number;
  pixelSize: number;
  binning: number;
  iterations: number;
  converged: boolean;
  /** Threads the kernel ran on. */
  threads: number;
  /** Shift applied to each frame to align it (input pixels), frame 0 at (0, 0). */
  shifts: { x: number; y: number }[];
  /** The aligned (and dose-weighted, when asked) sum, width × height. */
  sum: Float32Array;
}

/** Most worker threads a motion correction takes. */
export const MAX_MOTION_THREADS = 64;

function positive(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!(Number.isFinite(x) && x > 0))
    throw new RangeError(`${name} = ${v} is not allowed: must be a positive number`);
  return x;
}

export async function correctMotion(
  input: string | ImageStack,
  opts: MotionOptions = {},
  ctl: KernelControl = {},
): Promise<MotionResult> {
  const stack = typeof input === 'string' ? await openStack(input) : input;
  try {
    return await run(stack, typeof input === 'string', opts, ctl);
  } finally {
    if (typeof input === 'string') await stack.close();
  }
}

async function run(
  stack: ImageStack,
  byPath: boolean,
  opts: MotionOptions,
  ctl: KernelControl,
): Promise<MotionResult> {
  const { width: W, height: H, depth: N } = stack;
  if (N < 2) throw new RangeError(`${stack.path}: a movie needs at least 2 frames, it has ${N}`);
  const fromFile = stack.pixelSize?.unit === 'angstrom' ? stack.pixelSize.x : undefined;
  const pixelSize = positive('pixelSize', opts.pixelSize ?? fromFile, 1);
  const bFactor = opts.bFactor ?? 150;
  if (!(bFactor >= 0)) throw new RangeError(`bFactor = ${bFactor} is not allowed: must be 0 or more`);
  const maxShift = positive('maxShift', opts.maxShift, 40);
  const iterations = positive('iterations', opts.iterations, 10);
  const tolerance = positive('tolerance', opts.tolerance, 0.01);
  const alignSize = positive('alignSize', opts.alignSize, 1024);
  const threads = opts.threads ?? 1;
  if (!(Number.isInteger(threads) && threads >= 1 && threads <= MAX_MOTION_THREADS))
    throw new RangeError(
      `threads = ${opts.threads} is not allowed: must be an integer from 1 to ${MAX_MOTION_THREADS}`,
    );
  if (threads > 1 && !byPath)
    throw new RangeError(`threads = ${threads} needs the movie as a file path (each thread opens it)`);
  if (opts.doseWeighting) {
    positive('doseWeighting.dosePerFrame', opts.doseWeighting.dosePerFrame, 1);
    positive('doseWeighting.voltageKv', opts.doseWeighting.voltageKv, 300);
  }
  const span = { read: [0, 0.4], align: [0.4, 0.3], sum: [0.7, 0.3] } as const;
  const report = (phase: keyof typeof span) => (f: number, m: string) =>
    ctl.onProgress?.(span[phase][0] + f * span[phase][1], m);
  const grid = alignGrid(W, H, alignSize);
  const common = { width: W, height: H, frames: N, pixelSize, binning: grid.bin, threads };
  if (threads > 1) {
    const r = await correctMotionThreaded(
      {
        stack,
        grid,
        pixelSize,
        bFactor,
        maxShift,
        iterations,
        tolerance,
        dose: opts.doseWeighting,
        threads,
      },
      ctl,
      report,
    );
    return { ...common, ...r };
  }

  const len = alignSpectrumLength(grid);
  const spectra: Float32Array[] = [];
  const maker = await AlignSpectrumMaker.create(grid, pixelSize, bFactor);
  let plane: PlaneArray | undefined;
  try {
    for (let f = 0; f < N; f++) {
      throwIfAborted(ctl.signal, 'motion correction');
      const spec = new Float32Array(len);
      plane = await stack.readPlane(f, plane);
      maker.make(plane, spec);
      spectra.push(spec);
      report('read')((f + 1) / N, `read frame ${f + 1}/${N}`);
    }
  } finally {
    maker.dispose();
  }
  const aligned = await alignSpectra(
    spectra,
    grid.wa,
    grid.ha,
    { maxShift: Math.max(1, maxShift / grid.bin), iterations, tolerance: tolerance / grid.bin },
    { ...(ctl.signal ? { signal: ctl.signal } : {}), onProgress: report('align') },
  );
  spectra.length = 0;
  const shifts = aligned.shifts.map((s) => ({ x: s.x * grid.bin, y: s.y * grid.bin }));
  const summer = await FrameSummer.create(W, H, pixelSize, opts.doseWeighting);
  let acc: Float32Array;
  try {
    for (let f = 0; f < N; f++) {
      throwIfAborted(ctl.signal, 'motion correction');
      plane = await stack.readPlane(f, plane);
      summer.add(plane, f, shifts[f]!);
      report('sum')((f + 1) / N, `summed frame ${f + 1}/${N}`);
      if (f % 2 === 1) await yieldToEventLoop();
    }
    acc = summer.sum();
  } finally {
    summer.dispose();
  }
  const sum = await finishSum(acc, W, H, N, pixelSize, opts.doseWeighting);
  return { ...common, iterations: aligned.iterations, converged: aligned.converged, shifts, sum };
}

/** Writes the aligned sum (MRC, float32) and the shift trajectory (JSON). */
export async function writeMotionOutputs(
  result: MotionResult,
  out: { sumMrc?: string; trajectoryJson?: string },
): Promise<void> {
  if (out.sumMrc) {
    const w = await MrcWriter.create(out.sumMrc, {
      width: result.width,
      height: result.height,
      depth: 1,
      mode: 2,
      pixelSize: { x: result.pixelSize, y: result.pixelSize, z: result.pixelSize },
    });
    try {
      await w.writePlane(0, result.sum);
    } catch (err) {
      await w.abort();
      throw err;
    }
    await w.close();
  }
  if (out.trajectoryJson) {
    const { sum: _sum, ...rest } = result;
    const doc = {
      ...rest,
      shifts: result.shifts.map((s, frame) => ({ frame, x: round4(s.x), y: round4(s.y) })),
    };
    const tmp = `${out.trajectoryJson}.tmp-${process.pid}`;
    await writeFile(tmp, `${JSON.stringify(doc, null, 1)}\n`);
    await rename(tmp, out.trajectoryJson);
  }
}

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
