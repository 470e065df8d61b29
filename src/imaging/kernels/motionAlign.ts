/**
 * Whole-frame alignment of a movie from its frames' (cropped, B-factor-filtered) spectra: each
 * frame is cross-correlated with the sum of all the others as currently aligned (leave-one-out),
 * the peak is located to sub-pixel precision by a parabola through its neighbours in x and y, and
 * the sum is updated; repeated until no shift changes by more than the tolerance.
 */
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import type { RealFft2d } from './fft.js';

export interface AlignOptions {
  maxShift: number;
  iterations: number;
  tolerance: number;
}

/** exp(−2πi (kx·sx/w + ky·sy/h)) applied to a transposed half-plane spectrum, into `out`. */
export function shiftSpectrum(
  spec: Float32Array,
  w: number,
  h: number,
  sx: number,
  sy: number,
  out: Float32Array,
): void {
  const wc = w / 2 + 1;
  const py = new Float64Array(2 * h);
  for (let ky = 0; ky < h; ky++) {
    const f = ky < h / 2 ? ky : ky - h;
    const a = (-2 * Math.PI * f * sy) / h;
    py[2 * ky] = Math.cos(a);
    py[2 * ky + 1] = Math.sin(a);
  }
  for (let kx = 0; kx < wc; kx++) {
    const a = (-2 * Math.PI * kx * sx) / w;
    const cx = Math.cos(a);
    const sxn = Math.sin(a);
    const base = 2 * kx * h;
    for (let ky = 0; ky < h; ky++) {
      const pr = cx * py[2 * ky]! - sxn * py[2 * ky + 1]!;
      const pi = cx * py[2 * ky + 1]! + sxn * py[2 * ky]!;
      const re = spec[base + 2 * ky]!;
      const im = spec[base + 2 * ky + 1]!;
      out[base + 2 * ky] = re * pr - im * pi;
      out[base + 2 * ky + 1] = re * pi + im * pr;
    }
  }
}

/** Integer peak within `radius` of the origin (wrapping), refined by 3-point parabolas. */
export function subPixelPeak(
  cc: Float32Array,
  w: number,
  h: number,
  radius: number,
): { x: number; y: number; value: number } {
  const r = Math.min(radius, Math.floor(w / 2) - 1, Math.floor(h / 2) - 1);
  let best = -Infinity;
  let bx = 0;
  let by = 0;
  for (let dy = -r; dy <= r; dy++) {
    const row = ((dy + h) % h) * w;
    for (let dx = -r; dx <= r; dx++) {
      if (dx * dx + dy * dy > r * r) continue;
      const v = cc[row + ((dx + w) % w)]!;
      if (v > best) [best, bx, by] = [v, dx, dy];
    }
  }
  const at = (x: number, y: number) => cc[((y + h) % h) * w + ((x + w) % w)]!;
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
 * Aligns frames given their spectra (transposed half-plane, w×h). Returns per-frame shifts (pixels
 * of this grid) that align each frame to the sum, with frame 0 at (0, 0).
 */
export async function alignSpectra(
  spectra: Float32Array[],
  fft: RealFft2d,
  opts: AlignOptions,
  ctl: KernelControl = {},
): Promise<{ shifts: { x: number; y: number }[]; iterations: number; converged: boolean }> {
  const w = fft.width;
  const h = fft.height;
  const len = fft.spectrumLength;
  const n = spectra.length;
  const shifts = spectra.map(() => ({ x: 0, y: 0 }));
  const sum = new Float32Array(len);
  for (const s of spectra) for (let i = 0; i < len; i++) sum[i] = sum[i]! + s[i]!;
  const mine = new Float32Array(len);
  const prod = new Float32Array(len);
  const cc = new Float32Array(w * h);
  let iterations = 0;
  let converged = false;
  for (let it = 0; it < opts.iterations && !converged; it++) {
    iterations = it + 1;
    let maxChange = 0;
    for (let f = 0; f < n; f++) {
      throwIfAborted(ctl.signal, 'motion correction');
      const s = shifts[f]!;
      shiftSpectrum(spectra[f]!, w, h, s.x, s.y, mine);
      // Cross-correlation with the others: F · conj(S − F).
      for (let i = 0; i < len; i += 2) {
        const ar = mine[i]!;
        const ai = mine[i + 1]!;
        const br = sum[i]! - ar;
        const bi = sum[i + 1]! - ai;
        prod[i] = ar * br + ai * bi;
        prod[i + 1] = ai * br - ar * bi;
      }
      fft.inverse(prod, cc);
      const peak = subPixelPeak(cc, w, h, opts.maxShift);
      if (peak.x !== 0 || peak.y !== 0) {
        const next = { x: s.x - peak.x, y: s.y - peak.y };
        // Keep the sum consistent with the new shift: S += F·(P(new) − P(old)).
        shiftSpectrum(spectra[f]!, w, h, next.x, next.y, prod);
        for (let i = 0; i < len; i++) sum[i] = sum[i]! + prod[i]! - mine[i]!;
        shifts[f] = next;
        maxChange = Math.max(maxChange, Math.hypot(peak.x, peak.y));
      }
      if (f % 4 === 3) await yieldToEventLoop();
    }
    ctl.onProgress?.(
      Math.min(1, (it + 1) / opts.iterations),
      `iteration ${it + 1}: largest change ${maxChange.toFixed(3)} px`,
    );
    converged = maxChange < opts.tolerance;
  }
  const s0 = { ...shifts[0]! };
  return { shifts: shifts.map((s) => ({ x: s.x - s0.x, y: s.y - s0.y })), iterations, converged };
}
