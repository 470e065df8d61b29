/**
 * Coarse to fine alignment, as motion-correction programs do it: the whole-radius searches run on
 * the alignment spectra Fourier-cropped to half the grid per side (a quarter of the work per step),
 * until the frames stop moving there; then the full grid starts from those shifts with local steps
 * only (motionLocal.ts), which refine them to the full grid's precision. A frame whose local values
 * peak further than a pixel away gets a whole-radius search on the full grid (alignFrames), so a
 * coarse result that is off costs time, not accuracy.
 */
import type { KernelControl } from '../progress.js';
import { isFftSize, RealFft2d } from './fft.js';
import {
  alignFrames,
  LocalCorrelator,
  searchBand,
  type AlignOptions,
  type AlignResult,
  type BandCorrelator,
} from './motionAlign.js';

type Shift = { x: number; y: number };

/** Smallest side of a coarse grid: below it a grid is aligned at its own size only. */
const MIN_COARSE = 128;

/** The coarse grid of a w × h alignment grid (half each side), when both halves are FFT sizes of MIN_COARSE or more. */
export function coarseSize(w: number, h: number): { w: number; h: number } | undefined {
  const [cw, ch] = [w / 2, h / 2];
  return Math.min(cw, ch) >= MIN_COARSE && isFftSize(cw, 32) && isFftSize(ch, 16)
    ? { w: cw, h: ch }
    : undefined;
}

/**
 * The frequencies of a w × h transposed half-plane spectrum that a cw × ch grid holds, into `out`:
 * columns kx ≤ cw / 2, rows ky = −ch / 2 … ch / 2 − 1.
 */
export function cropSpectrum(
  spec: Float32Array,
  h: number,
  cw: number,
  ch: number,
  out: Float32Array,
): Float32Array {
  const half = ch / 2;
  for (let kx = 0; kx <= cw / 2; kx++) {
    const [s, d] = [2 * kx * h, 2 * kx * ch];
    out.set(spec.subarray(s, s + 2 * half), d);
    out.set(spec.subarray(s + 2 * (h - half), s + 2 * h), d + 2 * half);
  }
  return out;
}

/** One grid's correlator, open until close(). */
export type AlignLevel = BandCorrelator & { close(): Promise<void> | void };

/**
 * Aligns n frames whose spectra are on a w × h grid, through the coarse grid when there is one.
 * `open(w, h, radius, initial)` gives a correlator on that grid (the caller crops the spectra for the
 * coarse one) with its sum formed at `initial`.
 */
export async function alignCoarseToFine(
  n: number,
  w: number,
  h: number,
  opts: AlignOptions,
  ctl: KernelControl,
  open: (w: number, h: number, radius: number, initial: Shift[] | undefined) => Promise<AlignLevel>,
): Promise<AlignResult> {
  const run = async (
    lw: number,
    lh: number,
    o: AlignOptions,
    c: KernelControl,
    initial?: Shift[],
  ): Promise<AlignResult> => {
    const { radius } = searchBand(lw, lh, o.maxShift);
    const level = await open(lw, lh, radius, initial);
    try {
      return await alignFrames(n, lw, radius, level, o, c, initial);
    } finally {
      await level.close();
    }
  };
  const coarse = coarseSize(w, h);
  if (!coarse) return run(w, h, opts, ctl);
  const half = (from: number, prefix: string): KernelControl => ({
    ...(ctl.signal ? { signal: ctl.signal } : {}),
    onProgress: (f, m) => ctl.onProgress?.(from + f / 2, `${prefix}${m}`),
  });
  const first = await run(
    coarse.w,
    coarse.h,
    { ...opts, maxShift: Math.max(1, opts.maxShift / 2), tolerance: opts.tolerance / 2 },
    half(0, 'coarse grid '),
  );
  const start = first.shifts.map((s) => ({ x: 2 * s.x, y: 2 * s.y }));
  const fine = await run(w, h, opts, half(0.5, ''), start);
  return { ...fine, iterations: first.iterations + fine.iterations };
}

/**
 * Aligns frames given their spectra (transposed half-plane, w × h) in this thread. Returns per-frame
 * shifts (pixels of this grid) that align each frame to the sum, with frame 0 at (0, 0).
 */
export async function alignSpectra(
  spectra: Float32Array[],
  w: number,
  h: number,
  opts: AlignOptions,
  ctl: KernelControl = {},
): Promise<AlignResult> {
  return alignCoarseToFine(spectra.length, w, h, opts, ctl, async (lw, lh, radius, initial) => {
    const fft = await RealFft2d.create(lw, lh);
    const level =
      lw === w
        ? spectra
        : spectra.map((s) => cropSpectrum(s, h, lw, lh, new Float32Array(fft.spectrumLength)));
    const c = new LocalCorrelator(level, fft, radius, initial);
    return { band: (f, s, move, local) => c.band(f, s, move, local), close: () => fft.dispose() };
  });
}
