/**
 * 2D real FFTs on PFFFT (WebAssembly SIMD): rows by real transforms, then the columns by complex
 * transforms on contiguous memory. The spectrum is kept TRANSPOSED — half-plane column kx is a
 * contiguous run of `height` complex values — so the column pass needs no gather, and an inverse
 * needs one transpose, not two. `spectrumIndex` gives the layout.
 */
import {
  loadPffft,
  PFFFT_BACKWARD,
  PFFFT_COMPLEX,
  PFFFT_FORWARD,
  PFFFT_REAL,
  type PffftModule,
} from './pffftModule.js';

/** PFFFT sizes: 2^a·3^b·5^c, a multiple of 32 for real transforms (16 for complex). */
export function isFftSize(n: number, multiple = 32): boolean {
  if (!Number.isInteger(n) || n < multiple || n % multiple) return false;
  let m = n;
  for (const p of [2, 3, 5]) while (m % p === 0) m /= p;
  return m === 1;
}

export function nextFftSize(n: number): number {
  let m = Math.max(32, Math.ceil(n));
  while (!isFftSize(m)) m++;
  return m;
}

export function prevFftSize(n: number): number {
  let m = Math.floor(n);
  while (m >= 32 && !isFftSize(m)) m--;
  if (m < 32) throw new RangeError(`no FFT size at or below ${n} (the smallest is 32)`);
  return m;
}

/** Float offset of (kx, ky) in a transposed half-plane spectrum: re at i, im at i + 1. */
export function spectrumIndex(kx: number, ky: number, height: number): number {
  return 2 * (kx * height + ky);
}

const ROWS_PER_GROUP = 16;

export class RealFft2d {
  /** Number of half-plane columns: width / 2 + 1. */
  readonly wc: number;
  private readonly rowSetup: number;
  private readonly colSetup: number;
  private readonly work: number;
  private readonly rows: number;
  private readonly spec: number;
  private disposed = false;

  private constructor(
    private readonly m: PffftModule,
    readonly width: number,
    readonly height: number,
  ) {
    this.wc = width / 2 + 1;
    this.rowSetup = m._pffft_new_setup(width, PFFFT_REAL);
    this.colSetup = m._pffft_new_setup(height, PFFFT_COMPLEX);
    this.work = m._pffft_aligned_malloc(Math.max(width, 2 * height) * 4);
    this.rows = m._pffft_aligned_malloc(ROWS_PER_GROUP * width * 4);
    this.spec = m._pffft_aligned_malloc(this.wc * height * 8);
    if (!this.rowSetup || !this.colSetup || !this.work || !this.rows || !this.spec) {
      throw new RangeError(`cannot allocate a ${width}×${height} FFT`);
    }
  }

  static async create(width: number, height: number): Promise<RealFft2d> {
    if (!isFftSize(width, 32) || !isFftSize(height, 16)) {
      throw new RangeError(
        `FFT size ${width}×${height} is not allowed: width must be 2^a·3^b·5^c and a multiple of 32, height a multiple of 16 (nextFftSize() rounds up)`,
      );
    }
    return new RealFft2d(await loadPffft(), width, height);
  }

  /** Floats in a spectrum: wc × height complex values. */
  get spectrumLength(): number {
    return 2 * this.wc * this.height;
  }

  /** A view of the spectrum in the module's memory; valid until the next transform or create(). */
  private specView(): Float32Array {
    return this.m.HEAPF32.subarray(this.spec >> 2, (this.spec >> 2) + this.spectrumLength);
  }

  /**
   * Forward transform of a row-major width×height image (any numeric typed array). Returns the
   * unnormalised half-plane spectrum in the transposed layout, copied into `out` when given,
   * otherwise a view that the next call overwrites.
   */
  forward(
    image: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
    out?: Float32Array,
  ): Float32Array {
    this.check();
    const { m, width: W, height: H } = this;
    if (image.length !== W * H) throw new RangeError(`image has ${image.length} pixels, expected ${W}×${H}`);
    const heap = m.HEAPF32;
    const u32 = m.HEAPU32;
    const g0 = this.rows >> 2;
    const t0 = this.spec >> 2;
    const half = W / 2;
    for (let y0 = 0; y0 < H; y0 += ROWS_PER_GROUP) {
      const g = Math.min(ROWS_PER_GROUP, H - y0);
      for (let j = 0; j < g; j++) {
        const y = y0 + j;
        heap.set(image.subarray(y * W, y * W + W) as unknown as ArrayLike<number>, g0 + j * W);
        const row = this.rows + j * W * 4;
        m._pffft_transform_ordered(this.rowSetup, row, row, this.work, PFFFT_FORWARD);
      }
      // Copy bits (not values) so nothing is rounded or canonicalised on the way.
      for (let k = 1; k < half; k++) {
        const dst = t0 + 2 * (k * H + y0);
        const src = g0 + 2 * k;
        for (let j = 0; j < g; j++) {
          u32[dst + 2 * j] = u32[src + j * W]!;
          u32[dst + 2 * j + 1] = u32[src + j * W + 1]!;
        }
      }
      for (let j = 0; j < g; j++) {
        const y = y0 + j;
        heap[t0 + 2 * y] = heap[g0 + j * W]!;
        heap[t0 + 2 * y + 1] = 0;
        heap[t0 + 2 * (half * H + y)] = heap[g0 + j * W + 1]!;
        heap[t0 + 2 * (half * H + y) + 1] = 0;
      }
    }
    for (let k = 0; k < this.wc; k++) {
      const col = this.spec + k * H * 8;
      m._pffft_transform_ordered(this.colSetup, col, col, this.work, PFFFT_FORWARD);
    }
    const view = this.specView();
    if (out) {
      out.set(view);
      return out;
    }
    return view;
  }

  /**
   * Inverse transform of a transposed half-plane spectrum, normalised so that
   * inverse(forward(x)) = x. The spectrum is copied in first, so the argument is left intact.
   */
  inverse(spectrum: Float32Array, out = new Float32Array(this.width * this.height)): Float32Array {
    this.check();
    const { m, width: W, height: H } = this;
    if (spectrum.length !== this.spectrumLength) {
      throw new RangeError(`spectrum has ${spectrum.length} floats, expected ${this.spectrumLength}`);
    }
    const t0 = this.spec >> 2;
    if (spectrum.buffer !== m.HEAPF32.buffer || spectrum.byteOffset !== this.spec)
      m.HEAPF32.set(spectrum, t0);
    for (let k = 0; k < this.wc; k++) {
      const col = this.spec + k * H * 8;
      m._pffft_transform_ordered(this.colSetup, col, col, this.work, PFFFT_BACKWARD);
    }
    const heap = m.HEAPF32;
    const u32 = m.HEAPU32;
    const g0 = this.rows >> 2;
    const half = W / 2;
    const scale = 1 / (W * H);
    for (let y0 = 0; y0 < H; y0 += ROWS_PER_GROUP) {
      const g = Math.min(ROWS_PER_GROUP, H - y0);
      for (let k = 1; k < half; k++) {
        const src = t0 + 2 * (k * H + y0);
        const dst = g0 + 2 * k;
        for (let j = 0; j < g; j++) {
          u32[dst + j * W] = u32[src + 2 * j]!;
          u32[dst + j * W + 1] = u32[src + 2 * j + 1]!;
        }
      }
      for (let j = 0; j < g; j++) {
        const y = y0 + j;
        heap[g0 + j * W] = heap[t0 + 2 * y]!;
        heap[g0 + j * W + 1] = heap[t0 + 2 * (half * H + y)]!;
        const row = this.rows + j * W * 4;
        m._pffft_transform_ordered(this.rowSetup, row, row, this.work, PFFFT_BACKWARD);
        const r = g0 + j * W;
        const o = y * W;
        for (let x = 0; x < W; x++) out[o + x] = heap[r + x]! * scale;
      }
    }
    return out;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const m = this.m;
    m._pffft_destroy_setup(this.rowSetup);
    m._pffft_destroy_setup(this.colSetup);
    m._pffft_aligned_free(this.work);
    m._pffft_aligned_free(this.rows);
    m._pffft_aligned_free(this.spec);
  }

  private check(): void {
    if (this.disposed) throw new Error('RealFft2d used after dispose()');
  }
}

/** Converts a transposed half-plane spectrum to numpy's rfft2 layout: [height][wc] complex. */
export function toRowMajorSpectrum(
  spec: Float32Array,
  width: number,
  height: number,
  out?: Float32Array,
): Float32Array {
  const wc = width / 2 + 1;
  const o = out ?? new Float32Array(2 * wc * height);
  for (let k = 0; k < wc; k++) {
    for (let y = 0; y < height; y++) {
      o[2 * (y * wc + k)] = spec[2 * (k * height + y)]!;
      o[2 * (y * wc + k) + 1] = spec[2 * (k * height + y) + 1]!;
    }
  }
  return o;
}
