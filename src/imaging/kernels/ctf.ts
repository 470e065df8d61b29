/**
 * CTF estimation of a micrograph: periodogram-averaged power spectrum (powerSpectrum.ts), then the
 * fit (ctfFit.ts). The diagnostic image shows the background-subtracted spectrum on the left half
 * and the fitted CTF² on the right, as CTF tools do.
 */
import { writeGrayPng, quantiles } from '../formats/png.js';
import type { KernelControl } from '../progress.js';
import { ctfAt, ctfConstants, type Microscope } from './ctfModel.js';
import { fitCtf, type CtfFit, type CtfSearch } from './ctfFit.js';
import { powerSpectrum } from './powerSpectrum.js';

export interface CtfOptions extends Microscope, CtfSearch {
  /** Spectrum tile side (an FFT size); default 512. */
  tileSize?: number;
  /** Average at most this many tiles; default all (half-overlapping). */
  tiles?: number;
}

export interface CtfResult extends CtfFit {
  tileSize: number;
  tilesUsed: number;
  /** Background-subtracted amplitude spectrum (centred, tileSize²), for the diagnostic. */
  spectrum: Float32Array;
}

export async function estimateCtf(
  image: ArrayLike<number>,
  width: number,
  height: number,
  opts: CtfOptions,
  ctl: KernelControl = {},
): Promise<CtfResult> {
  for (const k of ['voltageKv', 'csMm', 'pixelSize'] as const) {
    if (!(Number.isFinite(opts[k]) && opts[k] > 0))
      throw new RangeError(`${k} = ${opts[k]} is not allowed: must be a positive number`);
  }
  if (!(opts.amplitudeContrast >= 0 && opts.amplitudeContrast < 1)) {
    throw new RangeError(`amplitudeContrast = ${opts.amplitudeContrast} is not allowed: must be in [0, 1)`);
  }
  const tileSize = opts.tileSize ?? 512;
  const ps = await powerSpectrum(
    image,
    width,
    height,
    { tileSize, ...(opts.tiles ? { tiles: opts.tiles } : {}) },
    { ...(ctl.signal ? { signal: ctl.signal } : {}), onProgress: (f, m) => ctl.onProgress?.(f * 0.4, m) },
  );
  const fit = await fitCtf(ps.power, ps.size, opts, opts, {
    ...(ctl.signal ? { signal: ctl.signal } : {}),
    onProgress: (f, m) => ctl.onProgress?.(0.4 + f * 0.6, m),
  });
  return { ...fit, tileSize: ps.size, tilesUsed: ps.tilesUsed };
}

/** Left half: observed (background-subtracted) spectrum; right half: the fitted CTF², same scale. */
export function ctfDiagnosticImage(result: CtfResult, scope: Microscope): Float32Array {
  const n = result.tileSize;
  const c = n / 2;
  const dk = 1 / (n * scope.pixelSize);
  const k = ctfConstants(scope);
  const [lo, hi] = quantiles(result.spectrum, [0.02, 0.98]) as [number, number];
  const out = new Float32Array(n * n);
  for (let v = 0; v < n; v++) {
    for (let u = 0; u < n; u++) {
      const i = v * n + u;
      if (u < c) out[i] = Math.min(hi, Math.max(lo, result.spectrum[i]!));
      else out[i] = lo + (hi - lo) * ctfAt((u - c) * dk, (v - c) * dk, result, k) ** 2;
    }
  }
  return out;
}

export async function writeCtfDiagnostic(path: string, result: CtfResult, scope: Microscope): Promise<void> {
  const img = ctfDiagnosticImage(result, scope);
  await writeGrayPng(path, img, result.tileSize, result.tileSize);
}
