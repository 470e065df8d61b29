/**
 * 2D power spectra of micrographs. With `tileSize`, the image is cut into square tiles overlapping
 * by half, and their spectra are averaged (periodogram averaging, as CTF tools do), which trades
 * frequency resolution for much less noise. Spectra are returned centred (zero frequency at
 * [n/2, n/2]); `logPowerSpectrum` gives the log-scaled view written as MRC and PNG.
 */
import { writeMrc } from '../formats/mrc.js';
import { writeGrayPng } from '../formats/png.js';
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import { isFftSize, prevFftSize, RealFft2d } from './fft.js';

export interface PowerSpectrumOptions {
  /** Tile side (an FFT size such as 256, 384, 512, 1024); default: one tile, the largest that fits. */
  tileSize?: number;
  /** Average at most this many tiles, spread evenly over the image; default all. */
  tiles?: number;
  /** Taper each tile with a Hann window (default) to keep tile edges out of the spectrum. */
  window?: 'hann' | 'none';
}

export interface PowerSpectrum {
  /** Side of the square spectrum. */
  size: number;
  /** Mean |F|² per pixel, centred: frequency (kx, ky) at [(ky + n/2) * n + kx + n/2]. */
  power: Float32Array;
  tilesUsed: number;
}

function tileOrigins(w: number, h: number, n: number, max: number | undefined): [number, number][] {
  const step = n / 2;
  const xs: number[] = [];
  const ys: number[] = [];
  for (let x = 0; x + n <= w; x += step) xs.push(x);
  for (let y = 0; y + n <= h; y += step) ys.push(y);
  const all: [number, number][] = [];
  for (const y of ys) for (const x of xs) all.push([x, y]);
  if (!max || max >= all.length) return all;
  const out: [number, number][] = [];
  for (let i = 0; i < max; i++) out.push(all[Math.floor(((i + 0.5) * all.length) / max)]!);
  return out;
}

export async function powerSpectrum(
  image: ArrayLike<number>,
  width: number,
  height: number,
  opts: PowerSpectrumOptions = {},
  ctl: KernelControl = {},
): Promise<PowerSpectrum> {
  if (image.length !== width * height)
    throw new RangeError(`image has ${image.length} pixels, expected ${width}×${height}`);
  const n = opts.tileSize ?? prevFftSize(Math.min(width, height));
  if (!isFftSize(n)) {
    throw new RangeError(
      `tileSize = ${n} is not allowed: must be 2^a·3^b·5^c and a multiple of 32 (e.g. 256, 384, 512, 1024)`,
    );
  }
  if (n > width || n > height)
    throw new RangeError(`tileSize = ${n} is larger than the ${width}×${height} image`);
  if (opts.tiles !== undefined && !(Number.isInteger(opts.tiles) && opts.tiles >= 1)) {
    throw new RangeError(`tiles = ${opts.tiles} is not allowed: must be a positive integer`);
  }
  const origins = opts.tileSize
    ? tileOrigins(width, height, n, opts.tiles)
    : [[Math.floor((width - n) / 2), Math.floor((height - n) / 2)] as [number, number]];
  const win = new Float32Array(n);
  for (let i = 0; i < n; i++)
    win[i] = opts.window === 'none' ? 1 : 0.5 - 0.5 * Math.cos((2 * Math.PI * (i + 0.5)) / n);
  const fft = await RealFft2d.create(n, n);
  const half = new Float64Array((n / 2 + 1) * n);
  const tile = new Float32Array(n * n);
  try {
    for (let t = 0; t < origins.length; t++) {
      throwIfAborted(ctl.signal, 'power spectrum');
      const [x0, y0] = origins[t]!;
      let mean = 0;
      for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) mean += image[(y0 + y) * width + x0 + x]!;
      mean /= n * n;
      for (let y = 0; y < n; y++) {
        const wy = win[y]!;
        for (let x = 0; x < n; x++)
          tile[y * n + x] = (image[(y0 + y) * width + x0 + x]! - mean) * wy * win[x]!;
      }
      const spec = fft.forward(tile);
      for (let i = 0; i < half.length; i++) {
        const re = spec[2 * i]!;
        const im = spec[2 * i + 1]!;
        half[i] = half[i]! + re * re + im * im;
      }
      ctl.onProgress?.((t + 1) / origins.length, `tile ${t + 1}/${origins.length}`);
      if (t % 8 === 7) await yieldToEventLoop();
    }
  } finally {
    fft.dispose();
  }
  const power = new Float32Array(n * n);
  const c = n / 2;
  const norm = 1 / (origins.length * n * n);
  for (let v = 0; v < n; v++) {
    const ky = v - c;
    for (let u = 0; u < n; u++) {
      const kx = u - c;
      // Half-plane storage [kx][ky]; the other half by Hermitian symmetry P(-k) = P(k).
      const i = kx >= 0 ? kx * n + ((ky + n) % n) : -kx * n + ((-ky + n) % n);
      power[v * n + u] = half[i]! * norm;
    }
  }
  return { size: n, power, tilesUsed: origins.length };
}

/** log(power), with zeros lifted to the smallest positive value so the log stays finite. */
export function logPowerSpectrum(power: Float32Array): Float32Array {
  let minPos = Infinity;
  for (const p of power) if (p > 0 && p < minPos) minPos = p;
  if (!Number.isFinite(minPos)) minPos = 1;
  return power.map((p) => Math.log(Math.max(p, minPos)));
}

/** Writes the log-scaled spectrum as an MRC image and an 8-bit PNG (zero frequency at the centre). */
export async function writePowerSpectrum(
  ps: PowerSpectrum,
  out: { mrc?: string; png?: string },
): Promise<void> {
  const log = logPowerSpectrum(ps.power);
  // Keep the DC pixel from setting the display range.
  const c = ps.size / 2;
  log[c * ps.size + c] = log[c * ps.size + c + 1]!;
  if (out.mrc) await writeMrc(out.mrc, [log], { width: ps.size, height: ps.size, mode: 2 });
  if (out.png) await writeGrayPng(out.png, log, ps.size, ps.size);
}
