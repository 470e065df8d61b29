/**
 * Motion correction of a movie (MRC or TIFF stack of frames): whole-frame shifts by iterative
 * leave-one-out cross-correlation (motionAlign.ts), then the aligned sum, optionally dose-weighted.
 *
 * Two passes over the file, one frame in memory at a time: the first keeps only each frame's
 * alignment spectrum (cropped to at most `alignSize` per side by Fourier binning); the second shifts
 * every full frame in Fourier space and accumulates the sum's spectrum. Memory is about
 * frames · wa · ha · 4 bytes for the alignment spectra (wa × ha ≤ alignSize²) plus about four
 * full-frame buffers of W · H · 4 bytes (FFT memory, the sum's spectrum, a padded frame when the
 * size needs padding) — independent of the movie's length apart from the first term.
 */
import { writeFile, rename } from 'node:fs/promises';
import { openStack } from '../formats/openStack.js';
import { MrcWriter } from '../formats/mrc.js';
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import type { ImageStack } from '../types.js';
import { doseFilter, frameExposure, type DoseWeighting } from './doseWeight.js';
import { nextFftSize, prevFftSize, RealFft2d } from './fft.js';
import { addShifted, alignSpectra } from './motionAlign.js';

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
}

export interface MotionResult {
  width: number;
  height: number;
  frames: number;
  pixelSize: number;
  binning: number;
  iterations: number;
  converged: boolean;
  /** Shift applied to each frame to align it (input pixels), frame 0 at (0, 0). */
  shifts: { x: number; y: number }[];
  /** The aligned (and dose-weighted, when asked) sum, width × height. */
  sum: Float32Array;
}

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
    return await run(stack, opts, ctl);
  } finally {
    if (typeof input === 'string') await stack.close();
  }
}

async function run(stack: ImageStack, opts: MotionOptions, ctl: KernelControl): Promise<MotionResult> {
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
  if (opts.doseWeighting) {
    positive('doseWeighting.dosePerFrame', opts.doseWeighting.dosePerFrame, 1);
    positive('doseWeighting.voltageKv', opts.doseWeighting.voltageKv, 300);
  }
  const report = (from: number, span: number) => (f: number, m: string) =>
    ctl.onProgress?.(from + f * span, m);

  // Alignment grid: bin by 2^k so the larger side fits alignSize; a centred crop of FFT sizes.
  let bin = 1;
  while (Math.max(W, H) / bin > alignSize) bin *= 2;
  const wa = prevFftSize(Math.floor(W / bin));
  const ha = prevFftSize(Math.floor(H / bin));
  const wFull = wa * bin;
  const hFull = ha * bin;
  const x0 = Math.floor((W - wFull) / 2);
  const y0 = Math.floor((H - hFull) / 2);
  const fftFull = await RealFft2d.create(wFull, hFull);
  const fftAlign = bin === 1 ? fftFull : await RealFft2d.create(wa, ha);
  const spectra: Float32Array[] = [];
  // B-factor in alignment-grid units: k² = (kx/(wa·p·bin))² + (ky/(ha·p·bin))².
  const pa = pixelSize * bin;
  // The B-factor low-pass exp(−B k²/4) is separable: gx(kx)·gy(ky), with the FFT's 1/(w·h) folded in.
  const wc = wa / 2 + 1;
  const gx = Float64Array.from({ length: wc }, (_, kx) => Math.exp((-bFactor * (kx / (wa * pa)) ** 2) / 4));
  const gy = Float64Array.from({ length: ha }, (_, ky) => {
    const sy = ky < ha / 2 ? ky : ky - ha;
    return Math.exp((-bFactor * (sy / (ha * pa)) ** 2) / 4) / (wFull * hFull);
  });
  try {
    for (let f = 0; f < N; f++) {
      throwIfAborted(ctl.signal, 'motion correction');
      const frame = await stack.readPlane(f);
      const full = fftFull.forward(frame, undefined, { stride: W, x0, y0 });
      const spec = new Float32Array(fftAlign.spectrumLength);
      for (let kx = 0; kx < wc; kx++) {
        const g = gx[kx]!;
        for (let ky = 0; ky < ha; ky++) {
          const srcKy = ky < ha / 2 ? ky : ky - ha + hFull;
          const si = 2 * (kx * hFull + srcKy);
          const di = 2 * (kx * ha + ky);
          const gg = g * gy[ky]!;
          spec[di] = full[si]! * gg;
          spec[di + 1] = full[si + 1]! * gg;
        }
      }
      spec[0] = 0; // the mean carries no alignment information
      spec[1] = 0;
      spectra.push(spec);
      report(0, 0.4)((f + 1) / N, `read frame ${f + 1}/${N}`);
    }
    const aligned = await alignSpectra(
      spectra,
      fftAlign,
      { maxShift: Math.max(1, maxShift / bin), iterations, tolerance: tolerance / bin },
      { ...(ctl.signal ? { signal: ctl.signal } : {}), onProgress: report(0.4, 0.3) },
    );
    spectra.length = 0;
    const shifts = aligned.shifts.map((s) => ({ x: s.x * bin, y: s.y * bin }));
    const sum = await alignedSum(stack, shifts, pixelSize, opts.doseWeighting, ctl, report(0.7, 0.3));
    return {
      width: W,
      height: H,
      frames: N,
      pixelSize,
      binning: bin,
      iterations: aligned.iterations,
      converged: aligned.converged,
      shifts,
      sum,
    };
  } finally {
    if (fftAlign !== fftFull) fftAlign.dispose();
    fftFull.dispose();
  }
}

/** Σ shifted frames in Fourier space (padded with each frame's mean), dose-weighted when asked. */
async function alignedSum(
  stack: ImageStack,
  shifts: { x: number; y: number }[],
  pixelSize: number,
  dose: DoseWeighting | undefined,
  ctl: KernelControl,
  progress: (f: number, m: string) => void,
): Promise<Float32Array> {
  const { width: W, height: H, depth: N } = stack;
  const wp = nextFftSize(W);
  const hp = nextFftSize(H);
  const fft = await RealFft2d.create(wp, hp);
  const len = fft.spectrumLength;
  const acc = new Float32Array(len);
  const padded = wp === W && hp === H ? undefined : new Float32Array(wp * hp);
  const wc = wp / 2 + 1;
  // Dose weights depend on |k| only: one table per frame over radial bins of the finer spacing.
  let radial: Uint16Array | undefined;
  let weightSq: Float32Array | undefined;
  const dk = 1 / (Math.max(wp, hp) * pixelSize);
  let nBins = 0;
  if (dose) {
    radial = new Uint16Array(len / 2);
    for (let kx = 0; kx < wc; kx++) {
      for (let ky = 0; ky < hp; ky++) {
        const fy = (ky < hp / 2 ? ky : ky - hp) / (hp * pixelSize);
        const fx = kx / (wp * pixelSize);
        const b = Math.round(Math.hypot(fx, fy) / dk);
        radial[kx * hp + ky] = b;
        nBins = Math.max(nBins, b + 1);
      }
    }
    weightSq = new Float32Array(nBins);
  }
  try {
    for (let f = 0; f < N; f++) {
      throwIfAborted(ctl.signal, 'motion correction');
      const frame = await stack.readPlane(f);
      let spec: Float32Array;
      if (padded) {
        // Pad with the frame's mean so the border adds no step to the spectrum.
        let mean = 0;
        for (let i = 0; i < frame.length; i++) mean += frame[i]!;
        mean /= frame.length;
        padded.fill(mean);
        for (let y = 0; y < H; y++)
          padded.set(frame.subarray(y * W, y * W + W) as unknown as ArrayLike<number>, y * wp);
        spec = fft.forward(padded);
      } else {
        spec = fft.forward(frame);
      }
      const { x: sx, y: sy } = shifts[f]!;
      if (radial && weightSq && dose) {
        const q = new Float32Array(nBins);
        const exposure = frameExposure(f, dose);
        for (let b = 0; b < nBins; b++) {
          q[b] = doseFilter(b * dk, exposure, dose.voltageKv);
          weightSq[b] = weightSq[b]! + q[b]! * q[b]!;
        }
        addShifted(spec, wp, hp, sx, sy, acc, { weights: q, bins: radial });
      } else {
        addShifted(spec, wp, hp, sx, sy, acc);
      }
      progress((f + 1) / N, `summed frame ${f + 1}/${N}`);
      if (f % 2 === 1) await yieldToEventLoop();
    }
    if (radial && weightSq) {
      // Restore the plain sum's noise power: scale by √(N / Σ q²) per frequency (1 at k = 0).
      const scale = Float32Array.from(weightSq, (s) => (s > 0 ? Math.sqrt(N / s) : 0));
      for (let i = 0; i < len / 2; i++) {
        const s = scale[radial[i]!]!;
        acc[2 * i] = acc[2 * i]! * s;
        acc[2 * i + 1] = acc[2 * i + 1]! * s;
      }
    }
    const full = fft.inverse(acc);
    const out = new Float32Array(W * H);
    for (let y = 0; y < H; y++) out.set(full.subarray(y * wp, y * wp + W), y * W);
    return out;
  } finally {
    fft.dispose();
  }
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
