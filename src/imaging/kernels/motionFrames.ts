/**
 * Per-frame steps of motion correction, shared by the in-process run and its worker threads so that
 * both compute the very same numbers: a frame's alignment spectrum (cropped, binned, B-factor
 * filtered) and the shifted, optionally dose-weighted, addition of a full frame to the sum's spectrum.
 */
import type { PlaneArray } from '../types.js';
import { doseFilter, frameExposure, type DoseWeighting } from './doseWeight.js';
import { nextFftSize, prevFftSize, RealFft2d } from './fft.js';
import { addShifted, PhaseRamp } from './motionAlign.js';
import { loadPffft, type PffftModule, type ShiftKernels } from './pffftModule.js';

/** The alignment grid: frames binned by 2^k so the larger side fits alignSize, a centred crop of FFT sizes. */
export interface AlignGrid {
  width: number;
  height: number;
  bin: number;
  /** Alignment grid (FFT sizes). */
  wa: number;
  ha: number;
  /** The full-resolution crop that bins to it, and its corner in the frame. */
  wFull: number;
  hFull: number;
  x0: number;
  y0: number;
}

export function alignGrid(width: number, height: number, alignSize: number): AlignGrid {
  let bin = 1;
  while (Math.max(width, height) / bin > alignSize) bin *= 2;
  const wa = prevFftSize(Math.floor(width / bin));
  const ha = prevFftSize(Math.floor(height / bin));
  const wFull = wa * bin;
  const hFull = ha * bin;
  return {
    width,
    height,
    bin,
    wa,
    ha,
    wFull,
    hFull,
    x0: Math.floor((width - wFull) / 2),
    y0: Math.floor((height - hFull) / 2),
  };
}

/** Floats in one frame's alignment spectrum. */
export function alignSpectrumLength(g: AlignGrid): number {
  return 2 * (g.wa / 2 + 1) * g.ha;
}

/**
 * Makes frames' alignment spectra. A binned grid is made by summing bin × bin blocks of the crop and
 * transforming that (a quarter of the work per halving, against Fourier-cropping a full-size
 * transform): the block sum's gentle high-frequency roll-off and the little it folds back from
 * beyond the grid's Nyquist sit where the B-factor filter has already taken most of the weight.
 * Then the B-factor filter.
 */
export class AlignSpectrumMaker {
  private readonly gx: Float64Array;
  private readonly gy: Float64Array;
  private readonly binned: Float32Array | undefined;

  private constructor(
    private readonly g: AlignGrid,
    private readonly fft: RealFft2d,
    pixelSize: number,
    bFactor: number,
  ) {
    const { wa, ha, bin, wFull, hFull } = g;
    // B-factor in alignment-grid units: k² = (kx/(wa·p·bin))² + (ky/(ha·p·bin))². The low-pass
    // exp(−B k²/4) is separable, gx(kx)·gy(ky), with the FFT's 1/(w·h) of the full crop folded in.
    const pa = pixelSize * bin;
    this.gx = Float64Array.from({ length: wa / 2 + 1 }, (_, kx) =>
      Math.exp((-bFactor * (kx / (wa * pa)) ** 2) / 4),
    );
    this.gy = Float64Array.from({ length: ha }, (_, ky) => {
      const sy = ky < ha / 2 ? ky : ky - ha;
      return Math.exp((-bFactor * (sy / (ha * pa)) ** 2) / 4) / (wFull * hFull);
    });
    this.binned = bin > 1 ? new Float32Array(wa * ha) : undefined;
  }

  static async create(g: AlignGrid, pixelSize: number, bFactor: number): Promise<AlignSpectrumMaker> {
    return new AlignSpectrumMaker(g, await RealFft2d.create(g.wa, g.ha), pixelSize, bFactor);
  }

  /** The frame's alignment spectrum (transposed half-plane, wa × ha) into `spec`. */
  make(frame: PlaneArray, spec: Float32Array): void {
    const { width, wa, ha, x0, y0 } = this.g;
    const { gx, gy, binned } = this;
    const full = binned
      ? this.fft.forward(binBlocks(frame, width, x0, y0, this.g.bin, wa, ha, binned))
      : this.fft.forward(frame, undefined, { stride: width, x0, y0 });
    const wc = wa / 2 + 1;
    for (let kx = 0; kx < wc; kx++) {
      const g = gx[kx]!;
      const base = 2 * kx * ha;
      for (let ky = 0; ky < ha; ky++) {
        const i = base + 2 * ky;
        const gg = g * gy[ky]!;
        spec[i] = full[i]! * gg;
        spec[i + 1] = full[i + 1]! * gg;
      }
    }
    spec[0] = 0; // the mean carries no alignment information
    spec[1] = 0;
  }

  dispose(): void {
    this.fft.dispose();
  }
}

/** Sums of bin × bin blocks of the w·bin × h·bin crop at (x0, y0) of a row-major frame `stride` wide. */
function binBlocks(
  frame: PlaneArray,
  stride: number,
  x0: number,
  y0: number,
  bin: number,
  w: number,
  h: number,
  out: Float32Array,
): Float32Array {
  if (bin === 2) {
    for (let y = 0; y < h; y++) {
      const a = (y0 + 2 * y) * stride + x0;
      const b = a + stride;
      const o = y * w;
      for (let x = 0; x < w; x++) {
        const i = 2 * x;
        out[o + x] = frame[a + i]! + frame[a + i + 1]! + frame[b + i]! + frame[b + i + 1]!;
      }
    }
    return out;
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let by = 0; by < bin; by++) {
        const a = (y0 + y * bin + by) * stride + x0 + x * bin;
        for (let bx = 0; bx < bin; bx++) s += frame[a + bx]!;
      }
      out[y * w + x] = s;
    }
  }
  return out;
}

/** Dose weights depend on |k| only: the radial bin of each half-plane frequency, over the finer spacing. */
export interface DoseBins {
  bins: Uint16Array;
  count: number;
  /** Å⁻¹ per bin. */
  dk: number;
}

export function doseBins(wp: number, hp: number, pixelSize: number): DoseBins {
  const wc = wp / 2 + 1;
  const bins = new Uint16Array(wc * hp);
  const dk = 1 / (Math.max(wp, hp) * pixelSize);
  let count = 0;
  for (let kx = 0; kx < wc; kx++) {
    for (let ky = 0; ky < hp; ky++) {
      const fy = (ky < hp / 2 ? ky : ky - hp) / (hp * pixelSize);
      const fx = kx / (wp * pixelSize);
      const b = Math.round(Math.hypot(fx, fy) / dk);
      bins[kx * hp + ky] = b;
      count = Math.max(count, b + 1);
    }
  }
  return { bins, count, dk };
}

/** Frame f's dose filter per radial bin. */
export function frameDoseWeights(f: number, d: DoseBins, dose: DoseWeighting): Float32Array {
  const q = new Float32Array(d.count);
  const exposure = frameExposure(f, dose);
  for (let b = 0; b < d.count; b++) q[b] = doseFilter(b * d.dk, exposure, dose.voltageKv);
  return q;
}

/** FFT size the aligned sum is computed at: each side rounded up, the frame padded with its mean. */
export function sumSize(width: number, height: number): { wp: number; hp: number } {
  return { wp: nextFftSize(width), hp: nextFftSize(height) };
}

/**
 * Accumulates shifted (and dose-weighted) frames into the sum's spectrum. With WebAssembly SIMD the
 * sum, the phase factors and the dose tables live in the FFT module's memory and transpose.wat's
 * addShifted does the accumulation beside the transform's output (float32 factors); else the JS
 * loops of motionAlign.ts do it (float64 factors).
 */
export class FrameSummer {
  private readonly acc: Float32Array | undefined;
  private readonly simd:
    | { k: ShiftKernels; m: PffftModule; acc: number; x: number; y: number; bins: number; weights: number }
    | undefined;
  private readonly padded: Float32Array | undefined;
  private readonly ramp: PhaseRamp;
  private disposed = false;

  private constructor(
    private readonly width: number,
    private readonly height: number,
    private readonly fft: RealFft2d,
    private readonly dose: { weighting: DoseWeighting; bins: DoseBins } | undefined,
    m: PffftModule,
  ) {
    const { width: wp, height: hp } = fft;
    this.ramp = new PhaseRamp(wp, hp);
    this.padded = wp === width && hp === height ? undefined : new Float32Array(wp * hp);
    if (m.shiftKernels) {
      const len = fft.spectrumLength;
      const malloc = (bytes: number) => {
        const p = m._pffft_aligned_malloc(bytes);
        if (!p) throw new RangeError(`cannot allocate the ${wp}×${hp} sum's buffers`);
        return p;
      };
      const acc = malloc(len * 4);
      const x = malloc(fft.wc * 8);
      const y = malloc(hp * 8);
      const bins = dose ? malloc(dose.bins.bins.length * 2) : 0;
      const weights = dose ? malloc(dose.bins.count * 4) : 0;
      m.HEAPF32.fill(0, acc >> 2, (acc >> 2) + len);
      if (dose) new Uint16Array(m.HEAPF32.buffer, bins, dose.bins.bins.length).set(dose.bins.bins);
      this.simd = { k: m.shiftKernels, m, acc, x, y, bins, weights };
    } else {
      this.acc = new Float32Array(fft.spectrumLength);
    }
  }

  static async create(
    width: number,
    height: number,
    pixelSize: number,
    dose: DoseWeighting | undefined,
  ): Promise<FrameSummer> {
    const { wp, hp } = sumSize(width, height);
    const fft = await RealFft2d.create(wp, hp);
    return new FrameSummer(
      width,
      height,
      fft,
      dose ? { weighting: dose, bins: doseBins(wp, hp, pixelSize) } : undefined,
      await loadPffft(),
    );
  }

  add(frame: PlaneArray, f: number, shift: { x: number; y: number }): void {
    if (this.disposed) throw new Error('FrameSummer used after dispose()');
    const { width: W, height: H, padded, fft, simd } = this;
    const { width: wp, height: hp } = fft;
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
    const weights = this.dose ? frameDoseWeights(f, this.dose.bins, this.dose.weighting) : undefined;
    if (simd) {
      const { m, k } = simd;
      const ramp = this.ramp.set(shift.x, shift.y);
      m.HEAPF32.set(ramp.x, simd.x >> 2);
      m.HEAPF32.set(ramp.y, simd.y >> 2);
      if (weights) {
        m.HEAPF32.set(weights, simd.weights >> 2);
        k.addShiftedWeighted(spec.byteOffset, simd.acc, simd.x, simd.y, fft.wc, hp, simd.bins, simd.weights);
      } else {
        k.addShifted(spec.byteOffset, simd.acc, simd.x, simd.y, fft.wc, hp);
      }
    } else if (weights) {
      addShifted(spec, wp, hp, shift.x, shift.y, this.acc!, { weights, bins: this.dose!.bins.bins });
    } else {
      addShifted(spec, wp, hp, shift.x, shift.y, this.acc!);
    }
  }

  /** The sum's spectrum so far (a copy when it lives in the module's memory). */
  sum(): Float32Array {
    if (this.disposed) throw new Error('FrameSummer used after dispose()');
    const { simd } = this;
    if (!simd) return this.acc!;
    const a = simd.acc >> 2;
    return simd.m.HEAPF32.slice(a, a + this.fft.spectrumLength);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.fft.dispose();
    const { simd } = this;
    if (simd)
      for (const p of [simd.acc, simd.x, simd.y, simd.bins, simd.weights])
        if (p) simd.m._pffft_aligned_free(p);
  }
}

/**
 * The sum from its spectrum (`acc`, overwritten: the result is a view of its memory): dose-weighted sums are rescaled by √(N / Σ q²) per
 * frequency to restore the plain sum's noise power (1 at k = 0), then transformed back and cropped.
 */
export async function finishSum(
  acc: Float32Array,
  width: number,
  height: number,
  frames: number,
  pixelSize: number,
  dose: DoseWeighting | undefined,
): Promise<Float32Array> {
  const { wp, hp } = sumSize(width, height);
  if (dose) {
    const d = doseBins(wp, hp, pixelSize);
    const weightSq = new Float32Array(d.count);
    for (let f = 0; f < frames; f++) {
      const q = frameDoseWeights(f, d, dose);
      for (let b = 0; b < d.count; b++) weightSq[b] = weightSq[b]! + q[b]! * q[b]!;
    }
    const scale = Float32Array.from(weightSq, (s) => (s > 0 ? Math.sqrt(frames / s) : 0));
    for (let i = 0; i < acc.length / 2; i++) {
      const s = scale[d.bins[i]!]!;
      acc[2 * i] = acc[2 * i]! * s;
      acc[2 * i + 1] = acc[2 * i + 1]! * s;
    }
  }
  const fft = await RealFft2d.create(wp, hp);
  try {
    // The image goes into acc's own memory (inverse copies the spectrum in first, and wp·hp is
    // less than acc's 2·(wp/2 + 1)·hp floats), then is cropped in place row by row (a row never
    // moves up past its source): no fresh 4·wp·hp bytes, which cost page faults as well as copies.
    const full = fft.inverse(acc, acc.subarray(0, wp * hp));
    if (width !== wp) for (let y = 1; y < height; y++) full.copyWithin(y * width, y * wp, y * wp + width);
    return acc.subarray(0, width * height);
  } finally {
    fft.dispose();
  }
}
