/**
 * Whole-frame alignment of a movie from its frames' (cropped, B-factor-filtered) spectra: each
 * frame is cross-correlated with the sum of all the others as currently aligned (leave-one-out),
 * the peak is located to sub-pixel precision by a parabola through its neighbours in x and y, and
 * the sum is updated; repeated until no shift changes by more than the tolerance.
 *
 * Only the band of cross-correlation rows that the search radius can reach is transformed back
 * (RealFft2d.inverseRows), and each frame's phase shift, product and sum update are single fused
 * passes over its spectrum.
 */
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import type { RealFft2d } from './fft.js';
import { correlateLocal, LOCAL_SUMS, localBand, unitTwiddles } from './motionLocal.js';

export interface AlignOptions {
  maxShift: number;
  iterations: number;
  tolerance: number;
}

/** Phase factors of a shift by (sx, sy): x[kx] for kx < w/2 + 1 and y[ky], as (cos, sin) pairs. */
export class PhaseRamp {
  readonly x: Float64Array;
  readonly y: Float64Array;
  constructor(
    private readonly w: number,
    private readonly h: number,
  ) {
    this.x = new Float64Array(2 * (w / 2 + 1));
    this.y = new Float64Array(2 * h);
  }

  /** exp(−2πi (kx·sx/w + ky·sy/h)) = x[kx] · y[ky]. */
  set(sx: number, sy: number): this {
    const { w, h } = this;
    for (let kx = 0; kx < w / 2 + 1; kx++) {
      const a = (-2 * Math.PI * kx * sx) / w;
      this.x[2 * kx] = Math.cos(a);
      this.x[2 * kx + 1] = Math.sin(a);
    }
    for (let ky = 0; ky < h; ky++) {
      const a = (-2 * Math.PI * (ky < h / 2 ? ky : ky - h) * sy) / h;
      this.y[2 * ky] = Math.cos(a);
      this.y[2 * ky + 1] = Math.sin(a);
    }
    return this;
  }
}

/**
 * acc += spec · exp(−2πi (kx·sx/w + ky·sy/h)) on a transposed half-plane spectrum, each
 * frequency weighted by weights[bins[i]] when both are given (dose weighting).
 */
export function addShifted(
  spec: Float32Array,
  w: number,
  h: number,
  sx: number,
  sy: number,
  acc: Float32Array,
  opts: { weights?: Float32Array; bins?: Uint16Array } = {},
): void {
  const ramp = new PhaseRamp(w, h).set(sx, sy);
  if (opts.weights && opts.bins) addShiftedWeighted(spec, ramp, h, acc, opts.weights, opts.bins);
  else addShiftedPlain(spec, ramp, h, acc);
}

function addShiftedPlain(spec: Float32Array, ramp: PhaseRamp, h: number, acc: Float32Array): void {
  const { x: px, y: py } = ramp;
  const wc = px.length / 2;
  for (let kx = 0; kx < wc; kx++) {
    const cx = px[2 * kx]!;
    const sxn = px[2 * kx + 1]!;
    const base = 2 * kx * h;
    for (let ky = 0; ky < h; ky++) {
      const cy = py[2 * ky]!;
      const sy = py[2 * ky + 1]!;
      const pr = cx * cy - sxn * sy;
      const pi = cx * sy + sxn * cy;
      const i = base + 2 * ky;
      const re = spec[i]!;
      const im = spec[i + 1]!;
      acc[i] = acc[i]! + re * pr - im * pi;
      acc[i + 1] = acc[i + 1]! + re * pi + im * pr;
    }
  }
}

function addShiftedWeighted(
  spec: Float32Array,
  ramp: PhaseRamp,
  h: number,
  acc: Float32Array,
  weights: Float32Array,
  bins: Uint16Array,
): void {
  const { x: px, y: py } = ramp;
  const wc = px.length / 2;
  for (let kx = 0; kx < wc; kx++) {
    const cx = px[2 * kx]!;
    const sxn = px[2 * kx + 1]!;
    const base = kx * h;
    for (let ky = 0; ky < h; ky++) {
      const cy = py[2 * ky]!;
      const sy = py[2 * ky + 1]!;
      const q = weights[bins[base + ky]!]!;
      const pr = (cx * cy - sxn * sy) * q;
      const pi = (cx * sy + sxn * cy) * q;
      const i = 2 * (base + ky);
      const re = spec[i]!;
      const im = spec[i + 1]!;
      acc[i] = acc[i]! + re * pr - im * pi;
      acc[i + 1] = acc[i + 1]! + re * pi + im * pr;
    }
  }
}

/** spec shifted by (sx, sy), into `out`. */
export function shiftSpectrum(
  spec: Float32Array,
  w: number,
  h: number,
  sx: number,
  sy: number,
  out: Float32Array,
): void {
  out.fill(0, 0, spec.length);
  addShifted(spec, w, h, sx, sy, out);
}

/**
 * Integer peak within `radius` of the origin, refined by 3-point parabolas, in a band of
 * cross-correlation rows −(radius + 1) … radius + 1 (row j of `band` is dy = j − radius − 1),
 * each `w` wide and wrapping in x.
 */
export function subPixelPeak(
  band: ArrayLike<number>,
  w: number,
  radius: number,
): { x: number; y: number; value: number } {
  const r = radius;
  const row0 = r + 1;
  let best = -Infinity;
  let bx = 0;
  let by = 0;
  for (let dy = -r; dy <= r; dy++) {
    const row = (dy + row0) * w;
    for (let dx = -r; dx <= r; dx++) {
      if (dx * dx + dy * dy > r * r) continue;
      const v = band[row + ((dx + w) % w)]!;
      if (v > best) [best, bx, by] = [v, dx, dy];
    }
  }
  const at = (x: number, y: number) => band[(y + row0) * w + ((x + w) % w)]!;
  const vertex = (m: number, c: number, p: number) => {
    const d = m - 2 * c + p;
    return d < 0 ? Math.max(-0.5, Math.min(0.5, (0.5 * (m - p)) / d)) : 0;
  };
  return {
    x: bx + vertex(at(bx - 1, by), best, at(bx + 1, by)),
    y: by + vertex(at(bx, by - 1), best, at(bx, by + 1)),
    value: best,
  };
}

/**
 * mine = spec·P and prod = mine · conj(sum − mine) over half-plane columns k0 … k1 − 1. Kept out of
 * the async loop so that each hot loop is a small function V8 optimises whole.
 */
export function correlateShifted(
  spec: Float32Array,
  sum: Float32Array,
  ramp: PhaseRamp,
  h: number,
  mine: Float32Array,
  prod: Float32Array,
  k0: number,
  k1: number,
): void {
  const { x: px, y: py } = ramp;
  for (let kx = k0; kx < k1; kx++) {
    const cx = px[2 * kx]!;
    const sxn = px[2 * kx + 1]!;
    const base = 2 * kx * h;
    for (let ky = 0; ky < h; ky++) {
      const cy = py[2 * ky]!;
      const sy = py[2 * ky + 1]!;
      const pr = cx * cy - sxn * sy;
      const pi = cx * sy + sxn * cy;
      const i = base + 2 * ky;
      const re = spec[i]!;
      const im = spec[i + 1]!;
      const ar = re * pr - im * pi;
      const ai = re * pi + im * pr;
      mine[i] = ar;
      mine[i + 1] = ai;
      const br = sum[i]! - ar;
      const bi = sum[i + 1]! - ai;
      prod[i] = ar * br + ai * bi;
      prod[i + 1] = ai * br - ar * bi;
    }
  }
}

/**
 * sum += mine · (P − minus) over columns k0 … k1 − 1: with minus = 1 it moves mine's contribution to
 * the sum by the ramp's shift; with 0 it adds mine shifted.
 */
export function addShiftDelta(
  mine: Float32Array,
  ramp: PhaseRamp,
  h: number,
  sum: Float32Array,
  k0: number,
  k1: number,
  minus = 1,
): void {
  const { x: px, y: py } = ramp;
  for (let kx = k0; kx < k1; kx++) {
    const cx = px[2 * kx]!;
    const sxn = px[2 * kx + 1]!;
    const base = 2 * kx * h;
    for (let ky = 0; ky < h; ky++) {
      const cy = py[2 * ky]!;
      const sy = py[2 * ky + 1]!;
      const pr = cx * cy - sxn * sy - minus;
      const pi = cx * sy + sxn * cy;
      const i = base + 2 * ky;
      const re = mine[i]!;
      const im = mine[i + 1]!;
      sum[i] = sum[i]! + re * pr - im * pi;
      sum[i + 1] = sum[i + 1]! + re * pi + im * pr;
    }
  }
}

/** Search radius (alignment-grid pixels) and the rows of the band that holds it with its neighbours. */
export function searchBand(w: number, h: number, maxShift: number): { radius: number; rows: number } {
  const radius = Math.max(1, Math.min(Math.floor(maxShift), Math.floor(w / 2) - 1, Math.floor((h - 3) / 2)));
  return { radius, rows: 2 * radius + 3 };
}

/**
 * Computes the cross-correlation band of one frame against the sum of the others: rows
 * −(radius + 1) … radius + 1, `w` wide, by an inverse FFT; or, when `local`, only the 5 × 5 values
 * around the origin that a search of radius 1 reads (motionLocal.ts). `move` first moves the
 * previous frame's contribution to the sum by −move (its peak), so a correlator in another thread
 * needs one round trip per frame.
 */
export interface BandCorrelator {
  band(
    f: number,
    shift: { x: number; y: number },
    move: { x: number; y: number } | undefined,
    local: boolean,
  ): Promise<ArrayLike<number>> | ArrayLike<number>;
}

/** The per-thread tables and buffers of local steps. */
export class LocalTables {
  readonly ex: { one: Float64Array; two: Float64Array };
  readonly ey: { one: Float64Array; two: Float64Array };
  readonly band: Float64Array;
  /** The previous frame's move, folded into the local pass. */
  readonly move: PhaseRamp;
  constructor(w: number, h: number) {
    this.ex = unitTwiddles(w, w / 2 + 1);
    this.ey = unitTwiddles(h, h);
    this.band = new Float64Array(5 * w);
    this.move = new PhaseRamp(w, h);
  }
}

/**
 * Columns k0 … k1 − 1 of the sum of the frames' spectra, each shifted by its initial shift (none:
 * the plain sum). Column by column the same arithmetic whatever the split, so threads agree bit for bit.
 */
function sumAt(
  spectra: Float32Array[],
  initial: readonly { x: number; y: number }[] | undefined,
  ramp: PhaseRamp,
  h: number,
  k0: number,
  k1: number,
): Float32Array {
  const sum = new Float32Array(spectra[0]!.length);
  if (initial) {
    spectra.forEach((sp, f) => addShiftDelta(sp, ramp.set(initial[f]!.x, initial[f]!.y), h, sum, k0, k1, 0));
    return sum;
  }
  // Column k is floats 2·k·h … 2·(k + 1)·h.
  const [a, b] = [2 * k0 * h, 2 * k1 * h];
  for (const sp of spectra) for (let i = a; i < b; i++) sum[i] = sum[i]! + sp[i]!;
  return sum;
}

/** The correlator of an in-process run: every frame's spectrum and the sum in this thread. */
export class LocalCorrelator implements BandCorrelator {
  private readonly sum: Float32Array;
  private readonly mine: Float32Array;
  private readonly out: Float32Array;
  private readonly ramp: PhaseRamp;
  private readonly tables: LocalTables;
  private readonly sums: Float64Array;

  constructor(
    private readonly spectra: Float32Array[],
    private readonly fft: RealFft2d,
    private readonly radius: number,
    /** Shifts the frames start at (alignFrames' `initial`); none: all at the origin. */
    initial?: readonly { x: number; y: number }[],
  ) {
    const len = fft.spectrumLength;
    this.ramp = new PhaseRamp(fft.width, fft.height);
    this.sum = sumAt(spectra, initial, this.ramp, fft.height, 0, fft.wc);
    this.mine = new Float32Array(len);
    this.out = new Float32Array(fft.width * (2 * radius + 3));
    this.tables = new LocalTables(fft.width, fft.height);
    this.sums = new Float64Array(LOCAL_SUMS * fft.wc);
  }

  band(
    f: number,
    s: { x: number; y: number },
    move: { x: number; y: number } | undefined,
    local: boolean,
  ): ArrayLike<number> {
    const { fft, ramp, sum, mine, tables } = this;
    const h = fft.height;
    if (local) {
      const m = tables.move.set(-(move?.x ?? 0), -(move?.y ?? 0));
      correlateLocal(this.spectra[f]!, sum, ramp.set(s.x, s.y), m, h, tables.ey, mine, this.sums, 0, fft.wc);
      return localBand(this.sums, fft.width, tables.ex, tables.band);
    }
    // Keep the sum consistent with the previous frame's new shift: S += mine·P(−peak) − mine.
    if (move) addShiftDelta(mine, ramp.set(-move.x, -move.y), h, sum, 0, fft.wc);
    // mine = F·P(shift) and the cross-correlation with the others, mine · conj(S − mine), written
    // straight into the FFT's buffer.
    const prod = fft.spectrumBuffer();
    correlateShifted(this.spectra[f]!, sum, ramp.set(s.x, s.y), h, mine, prod, 0, fft.wc);
    return fft.inverseRows(prod, -(this.radius + 1), 2 * this.radius + 3, this.out);
  }
}

/**
 * One thread's share of a threaded alignment: half-plane columns k0 … k1 − 1 of every frame's
 * spectrum and of the sum. A step computes their product and column transforms and copies the band
 * of rows the search reaches into `band` (RealFft2d.columnBand's layout).
 */
export class ColumnShare {
  private readonly sum: Float32Array;
  private readonly mine: Float32Array;
  private readonly ramp: PhaseRamp;

  constructor(
    private readonly spectra: Float32Array[],
    private readonly fft: RealFft2d,
    private readonly k0: number,
    private readonly k1: number,
    private readonly radius: number,
    private readonly band: Float32Array,
    /** LOCAL_SUMS doubles per column, all columns: this share writes its own. */
    private readonly sums: Float64Array,
    initial?: readonly { x: number; y: number }[],
  ) {
    this.ramp = new PhaseRamp(fft.width, fft.height);
    // Only this share's columns of the sum are formed and used.
    this.sum = sumAt(spectra, initial, this.ramp, fft.height, k0, k1);
    this.mine = new Float32Array(fft.spectrumLength);
    this.tables = new LocalTables(fft.width, fft.height);
  }

  private readonly tables: LocalTables;

  step(f: number, x: number, y: number, move: { x: number; y: number } | undefined, local: boolean): void {
    const { fft, ramp, sum, mine, k0, k1, radius } = this;
    const h = fft.height;
    if (local) {
      const m = this.tables.move.set(-(move?.x ?? 0), -(move?.y ?? 0));
      correlateLocal(this.spectra[f]!, sum, ramp.set(x, y), m, h, this.tables.ey, mine, this.sums, k0, k1);
      return;
    }
    if (move) addShiftDelta(mine, ramp.set(-move.x, -move.y), h, sum, k0, k1);
    const prod = fft.spectrumBuffer();
    correlateShifted(this.spectra[f]!, sum, ramp.set(x, y), h, mine, prod, k0, k1);
    fft.inverseColumns(k0, k1);
    fft.columnBand(k0, k1, -(radius + 1), 2 * radius + 3, this.band);
  }
}

export interface AlignResult {
  shifts: { x: number; y: number }[];
  iterations: number;
  converged: boolean;
}

/** Largest change (alignment-grid pixels) of an iteration after which the next one is local. */
const LOCAL_BELOW = 1;

/**
 * Whether a local step's 5 × 5 values (localBand's layout) peak at the origin or one of its four
 * neighbours, where a search of radius 1 and its parabolas are right; else the peak may lie further.
 */
function peaksNearOrigin(band: ArrayLike<number>, w: number): boolean {
  let best = -Infinity;
  let near = false;
  for (let dy = -2; dy <= 2; dy++) {
    for (let dx = -2; dx <= 2; dx++) {
      const v = band[(dy + 2) * w + ((dx + w) % w)]!;
      if (v > best) [best, near] = [v, dx * dx + dy * dy <= 1];
    }
  }
  return near;
}

/**
 * The iterative leave-one-out alignment of n frames, whatever computes their correlation bands.
 * `initial` starts the frames at known shifts (a coarser grid's result, in this grid's pixels): the
 * iterations are then local from the first, the correlator's sum formed at those shifts.
 */
export async function alignFrames(
  n: number,
  w: number,
  radius: number,
  correlator: BandCorrelator,
  opts: AlignOptions,
  ctl: KernelControl = {},
  initial?: readonly { x: number; y: number }[],
): Promise<AlignResult> {
  const shifts = Array.from({ length: n }, (_, f) => ({ x: initial?.[f]?.x ?? 0, y: initial?.[f]?.y ?? 0 }));
  let move: { x: number; y: number } | undefined;
  let iterations = 0;
  let converged = false;
  // The first iteration searches the whole radius; once an iteration moved no frame by a pixel or
  // more, each frame's peak is within a pixel of the origin and the next ones look only there. A
  // local step whose values peak further out searches the whole radius for that frame.
  let local = initial !== undefined;
  for (let it = 0; it < opts.iterations && !converged; it++) {
    iterations = it + 1;
    let maxChange = 0;
    for (let f = 0; f < n; f++) {
      throwIfAborted(ctl.signal, 'motion correction');
      const s = shifts[f]!;
      let band = await correlator.band(f, s, move, local);
      let near = local;
      // The move is in the sum already: the search step adds none.
      if (local && !peaksNearOrigin(band, w))
        [band, near] = [await correlator.band(f, s, undefined, false), false];
      const peak = subPixelPeak(band, w, near ? 1 : radius);
      move = undefined;
      if (peak.x !== 0 || peak.y !== 0) {
        move = { x: peak.x, y: peak.y };
        shifts[f] = { x: s.x - peak.x, y: s.y - peak.y };
        maxChange = Math.max(maxChange, Math.hypot(peak.x, peak.y));
      }
      if (f % 4 === 3) await yieldToEventLoop();
    }
    ctl.onProgress?.(
      Math.min(1, (it + 1) / opts.iterations),
      `iteration ${it + 1}: largest change ${maxChange.toFixed(3)} px`,
    );
    converged = maxChange < opts.tolerance;
    local = maxChange < LOCAL_BELOW;
  }
  const s0 = { ...shifts[0]! };
  return { shifts: shifts.map((s) => ({ x: s.x - s0.x, y: s.y - s0.y })), iterations, converged };
}
