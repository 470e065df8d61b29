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
/** Columns forwardRowMajor transforms per block: COLUMN_GROUP · height · 8 bytes, in cache. */
const COLUMN_GROUP = 16;

export class RealFft2d {
  /** Number of half-plane columns: width / 2 + 1. */
  readonly wc: number;
  private readonly rowSetup: number;
  private readonly colSetup: number;
  private readonly work: number;
  private readonly rows: number;
  private readonly spec: number;
  /** numpy-layout output of forwardRowMajor and its column block, allocated on first use. */
  private rowMajor = 0;
  private columns = 0;
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

  /**
   * The module-memory spectrum buffer. A caller may write a spectrum here and pass this very view
   * to inverse(), which then skips its copy. Valid until the next transform or create().
   */
  spectrumBuffer(): Float32Array {
    this.check();
    return this.m.HEAPF32.subarray(this.spec >> 2, (this.spec >> 2) + this.spectrumLength);
  }

  /**
   * Forward transform of a row-major width×height image (any numeric typed array). Returns the
   * unnormalised half-plane spectrum in the transposed layout, copied into `out` when given,
   * otherwise a view that the next call overwrites. `window` reads the image as the width×height
   * block at (x0, y0) of a larger row-major image `stride` pixels wide, so no crop copy is needed.
   */
  forward(
    image: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
    out?: Float32Array,
    window?: { stride: number; x0: number; y0: number },
  ): Float32Array {
    this.check();
    const { m, width: W, height: H } = this;
    const stride = window?.stride ?? W;
    const first = this.checkWindow(image, window);
    const heap = m.HEAPF32;
    const t0 = this.spec >> 2;
    const half = W / 2;
    for (let y0 = 0; y0 < H; y0 += ROWS_PER_GROUP) {
      const g = Math.min(ROWS_PER_GROUP, H - y0);
      for (let j = 0; j < g; j++) {
        this.transformRow(image, first + (y0 + j) * stride, j);
      }
      // Columns 0 … W/2 − 1 of the group into the spectrum; column 0 holds PFFFT's packed
      // (DC, Nyquist) pair, unpacked below.
      m.transpose64(this.rows, W * 4, this.spec + y0 * 8, H * 8, g, half);
      for (let j = 0; j < g; j++) {
        const y = y0 + j;
        heap[t0 + 2 * (half * H + y)] = heap[t0 + 2 * y + 1]!;
        heap[t0 + 2 * (half * H + y) + 1] = 0;
        heap[t0 + 2 * y + 1] = 0;
      }
    }
    for (let k = 0; k < this.wc; k++) {
      const col = this.spec + k * H * 8;
      m._pffft_transform_ordered(this.colSetup, col, col, this.work, PFFFT_FORWARD);
    }
    const view = heap.subarray(t0, t0 + this.spectrumLength);
    if (out) {
      out.set(view);
      return out;
    }
    return view;
  }

  /**
   * Forward transform in numpy's rfft2 layout: `height` rows of width / 2 + 1 complex values. The
   * rows are transformed straight into that layout; then the columns, COLUMN_GROUP at a time, are
   * turned into a small contiguous block (the WebAssembly SIMD transpose), transformed there while
   * it is in cache, and turned back. Returns a copy in `out` when given, else a view that the next
   * forwardRowMajor overwrites.
   */
  forwardRowMajor(
    image: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
    out?: Float32Array,
    window?: { stride: number; x0: number; y0: number },
  ): Float32Array {
    this.check();
    const { m, width: W, height: H, wc } = this;
    const first = this.checkWindow(image, window);
    const stride = window?.stride ?? W;
    if (!this.rowMajor) {
      this.rowMajor = m._pffft_aligned_malloc(wc * H * 8);
      this.columns = m._pffft_aligned_malloc(COLUMN_GROUP * H * 8);
      if (!this.rowMajor || !this.columns)
        throw new RangeError(`cannot allocate a ${this.width}×${H} spectrum`);
    }
    const heap = m.HEAPF32;
    const half = W / 2;
    const r0 = this.rowMajor >> 2;
    const g0 = this.rows >> 2;
    for (let y0 = 0; y0 < H; y0 += ROWS_PER_GROUP) {
      const g = Math.min(ROWS_PER_GROUP, H - y0);
      for (let j = 0; j < g; j++) {
        this.transformRow(image, first + (y0 + j) * stride, j);
        // PFFFT packs (DC, Nyquist) into the first pair: unpack into columns 0 and width / 2.
        const d = r0 + 2 * (y0 + j) * wc;
        heap.copyWithin(d, g0 + j * W, g0 + j * W + W);
        heap[d + 2 * half] = heap[d + 1]!;
        heap[d + 2 * half + 1] = 0;
        heap[d + 1] = 0;
      }
    }
    for (let k0 = 0; k0 < wc; k0 += COLUMN_GROUP) {
      const n = Math.min(COLUMN_GROUP, wc - k0);
      m.transpose64(this.rowMajor + k0 * 8, wc * 8, this.columns, H * 8, H, n);
      for (let c = 0; c < n; c++) {
        const col = this.columns + c * H * 8;
        m._pffft_transform_ordered(this.colSetup, col, col, this.work, PFFFT_FORWARD);
      }
      m.transpose64(this.columns, H * 8, this.rowMajor + k0 * 8, wc * 8, n, H);
    }
    const view = heap.subarray(r0, r0 + this.spectrumLength);
    if (out) {
      out.set(view);
      return out;
    }
    return view;
  }

  /**
   * Inverse transform of a transposed half-plane spectrum, normalised so that
   * inverse(forward(x)) = x. The spectrum is copied in first (unless it is spectrumBuffer()), so
   * the argument is left intact.
   */
  inverse(
    spectrum: Float32Array,
    out: Float32Array = new Float32Array(this.width * this.height),
  ): Float32Array {
    return this.inverseRows(spectrum, 0, this.height, out);
  }

  /**
   * Rows y0 … y0 + count − 1 (taken modulo height, so y0 may be negative) of the inverse
   * transform, into `out` (count × width). Every column is still transformed, but only these rows
   * are: a cross-correlation searched near the origin needs a thin band, not the whole image.
   */
  inverseRows(
    spectrum: Float32Array,
    y0: number,
    count: number,
    out: Float32Array = new Float32Array(this.width * count),
  ): Float32Array {
    this.check();
    const { m, width: W, height: H } = this;
    if (spectrum.length !== this.spectrumLength) {
      throw new RangeError(`spectrum has ${spectrum.length} floats, expected ${this.spectrumLength}`);
    }
    if (!(Number.isInteger(y0) && Number.isInteger(count) && count >= 1 && count <= H))
      throw new RangeError(`rows ${y0} + ${count} are not allowed: count must be an integer in [1, ${H}]`);
    if (out.length < W * count) throw new RangeError(`out has ${out.length} floats, needs ${W * count}`);
    if (spectrum.buffer !== m.HEAPF32.buffer || spectrum.byteOffset !== this.spec)
      m.HEAPF32.set(spectrum, this.spec >> 2);
    this.inverseColumns(0, this.wc);
    return this.rowsBackward(H, ((y0 % H) + H) % H, count, out);
  }

  /**
   * Backward column transforms, in place in spectrumBuffer(), of half-plane columns k0 … k1 − 1
   * only: one thread's share of an inverse whose rows another thread finishes (inverseBand).
   */
  inverseColumns(k0: number, k1: number): void {
    this.check();
    const { m, height: H } = this;
    for (let k = k0; k < k1; k++) {
      const col = this.spec + k * H * 8;
      m._pffft_transform_ordered(this.colSetup, col, col, this.work, PFFFT_BACKWARD);
    }
  }

  /**
   * Copies rows y0 … y0 + count − 1 (modulo height) of columns k0 … k1 − 1 of spectrumBuffer(),
   * after inverseColumns, into `band` laid out as inverseBand takes it: column k is `count`
   * complex values from float 2·k·count.
   */
  columnBand(k0: number, k1: number, y0: number, count: number, band: Float32Array): void {
    this.check();
    const H = this.height;
    const heap = this.m.HEAPF32;
    const t0 = this.spec >> 2;
    const start = ((y0 % H) + H) % H;
    for (let k = k0; k < k1; k++) {
      for (let j = 0; j < count; j++) {
        const s = t0 + 2 * (k * H + ((start + j) % H));
        const d = 2 * (k * count + j);
        band[d] = heap[s]!;
        band[d + 1] = heap[s + 1]!;
      }
    }
  }

  /**
   * Finishes an inverse from a band of column-transformed rows (columnBand's layout, wc × count
   * complex): the same row pass as inverseRows, so the rows are bit-identical to its.
   */
  inverseBand(
    band: Float32Array,
    count: number,
    out: Float32Array = new Float32Array(this.width * count),
  ): Float32Array {
    this.check();
    if (!(Number.isInteger(count) && count >= 1 && count <= this.height) || band.length < 2 * this.wc * count)
      throw new RangeError(`band of ${band.length} floats does not hold ${this.wc} columns of ${count} rows`);
    if (out.length < this.width * count)
      throw new RangeError(`out has ${out.length} floats, needs ${this.width * count}`);
    this.m.HEAPF32.set(band.subarray(0, 2 * this.wc * count), this.spec >> 2);
    return this.rowsBackward(count, 0, count, out);
  }

  /** Row pass of an inverse: spectrumBuffer() holds wc column-transformed columns of `colLen` values. */
  private rowsBackward(colLen: number, start: number, count: number, out: Float32Array): Float32Array {
    const { m, width: W } = this;
    const heap = m.HEAPF32;
    const t0 = this.spec >> 2;
    const g0 = this.rows >> 2;
    const half = W / 2;
    const scale = 1 / (W * this.height);
    for (let r0 = 0; r0 < count; r0 += ROWS_PER_GROUP) {
      const g = Math.min(ROWS_PER_GROUP, count - r0);
      if (start + r0 + g <= colLen) {
        m.transpose64(this.spec + (start + r0) * 8, colLen * 8, this.rows, W * 4, half, g);
      } else {
        for (let j = 0; j < g; j++) {
          const y = (start + r0 + j) % colLen;
          m.transpose64(this.spec + y * 8, colLen * 8, this.rows + j * W * 4, 0, half, 1);
        }
      }
      for (let j = 0; j < g; j++) {
        const y = (start + r0 + j) % colLen;
        // Column 0 came over as (DC, 0): PFFFT packs the Nyquist term in its place.
        heap[g0 + j * W + 1] = heap[t0 + 2 * (half * colLen + y)]!;
        const row = this.rows + j * W * 4;
        m._pffft_transform_ordered(this.rowSetup, row, row, this.work, PFFFT_BACKWARD);
        const r = g0 + j * W;
        const o = (r0 + j) * W;
        for (let x = 0; x < W; x++) out[o + x] = heap[r + x]! * scale;
      }
    }
    return out;
  }

  /** Float offset of the image's first pixel, after checking that the window fits. */
  /** Copies the row of `image` at `start` into slot `j` of the row buffer and transforms it in place. */
  private transformRow(
    image: ArrayLike<number> & { subarray(a: number, b: number): ArrayLike<number> },
    start: number,
    j: number,
  ): void {
    const W = this.width;
    this.m.HEAPF32.set(
      image.subarray(start, start + W) as unknown as ArrayLike<number>,
      (this.rows >> 2) + j * W,
    );
    const row = this.rows + j * W * 4;
    this.m._pffft_transform_ordered(this.rowSetup, row, row, this.work, PFFFT_FORWARD);
  }

  private checkWindow(
    image: ArrayLike<number>,
    window: { stride: number; x0: number; y0: number } | undefined,
  ): number {
    const { width: W, height: H } = this;
    const stride = window?.stride ?? W;
    const first = window ? window.y0 * stride + window.x0 : 0;
    if (!window && image.length !== W * H)
      throw new RangeError(`image has ${image.length} pixels, expected ${W}×${H}`);
    if (
      window &&
      (window.x0 < 0 ||
        window.y0 < 0 ||
        window.x0 + W > stride ||
        first + (H - 1) * stride + W > image.length)
    )
      throw new RangeError(
        `window ${W}×${H} at (${window.x0}, ${window.y0}) does not fit an image ${stride} pixels wide with ${image.length} pixels`,
      );
    return first;
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
    if (this.rowMajor) m._pffft_aligned_free(this.rowMajor);
    if (this.columns) m._pffft_aligned_free(this.columns);
  }

  private check(): void {
    if (this.disposed) throw new Error('RealFft2d used after dispose()');
  }
}

/**
 * Converts a transposed half-plane spectrum to numpy's rfft2 layout: [height][wc] complex, in plain JS
 * (RealFft2d.forwardRowMajor does it in WebAssembly SIMD as part of the transform).
 */
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
