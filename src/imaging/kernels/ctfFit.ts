/**
 * CTF estimation from an averaged power spectrum, in the manner of CTFFIND: the amplitude spectrum
 * minus a box-car-smoothed background is compared with CTF² by normalised cross-correlation over a
 * resolution band; a 1D search over defocus, a grid over astigmatism, then a simplex refinement.
 */
import { throwIfAborted, yieldToEventLoop, type KernelControl } from '../progress.js';
import { ctfConstants, type CtfParams, type Microscope } from './ctfModel.js';
import { nelderMead } from './nelderMead.js';

export interface CtfSearch {
  /** Fit band, Å (low and high resolution limits). */
  minResolution?: number;
  maxResolution?: number;
  /** Defocus search range, Å. */
  minDefocus?: number;
  maxDefocus?: number;
  /** Largest |Δf_U − Δf_V| searched, Å. */
  maxAstigmatism?: number;
}

export interface CtfFit extends CtfParams {
  /** Normalised cross-correlation of background-subtracted spectrum and CTF² over the band. */
  score: number;
  /** Å: the resolution up to which the Thon rings agree with the fitted CTF. */
  fitResolution: number;
}

/** Background-subtracted amplitude spectrum, centred n×n. */
export function subtractBackground(power: Float32Array, n: number): Float32Array {
  const amp = new Float32Array(n * n);
  for (let i = 0; i < amp.length; i++) amp[i] = Math.sqrt(Math.max(0, power[i]!));
  const c = n / 2;
  // The zero-frequency pixel and its neighbours dominate any smoothing: replace them by the ring around.
  amp[c * n + c] = amp[c * n + c + 2]!;
  const r = Math.max(3, Math.round(n / 20));
  const box = boxFilter(boxFilter(amp, n, r, true), n, r, false);
  for (let i = 0; i < amp.length; i++) amp[i] = amp[i]! - box[i]!;
  return amp;
}

function boxFilter(src: Float32Array, n: number, r: number, alongX: boolean): Float32Array {
  const out = new Float32Array(n * n);
  for (let line = 0; line < n; line++) {
    let s = 0;
    let count = 0;
    const at = (i: number) => (alongX ? src[line * n + i]! : src[i * n + line]!);
    for (let i = 0; i <= r && i < n; i++) {
      s += at(i);
      count++;
    }
    for (let i = 0; i < n; i++) {
      const o = alongX ? line * n + i : i * n + line;
      out[o] = s / count;
      const add = i + r + 1;
      const drop = i - r;
      if (add < n) {
        s += at(add);
        count++;
      }
      if (drop >= 0) {
        s -= at(drop);
        count--;
      }
    }
  }
  return out;
}

/** Band pixels of the upper half-plane, with what χ needs precomputed. */
interface Band {
  k2: Float64Array;
  cos2: Float64Array;
  sin2: Float64Array;
  obs: Float64Array;
}

function bandOf(spec: Float32Array, n: number, pixelSize: number, kmin: number, kmax: number): Band {
  const c = n / 2;
  const dk = 1 / (n * pixelSize);
  const idx: number[] = [];
  for (let v = c; v < n; v++) {
    for (let u = 0; u < n; u++) {
      if (v === c && u < c) continue;
      const kx = (u - c) * dk;
      const ky = (v - c) * dk;
      const k = Math.hypot(kx, ky);
      // Skip the axes: detector and tiling artefacts concentrate on the central cross.
      if (k >= kmin && k <= kmax && u !== c && v !== c) idx.push(v * n + u);
    }
  }
  const b: Band = {
    k2: new Float64Array(idx.length),
    cos2: new Float64Array(idx.length),
    sin2: new Float64Array(idx.length),
    obs: new Float64Array(idx.length),
  };
  let mean = 0;
  idx.forEach((p, i) => {
    const kx = ((p % n) - c) * dk;
    const ky = (Math.floor(p / n) - c) * dk;
    const th = Math.atan2(ky, kx);
    b.k2[i] = kx * kx + ky * ky;
    b.cos2[i] = Math.cos(2 * th);
    b.sin2[i] = Math.sin(2 * th);
    b.obs[i] = spec[p]!;
    mean += spec[p]!;
  });
  mean /= idx.length || 1;
  let ss = 0;
  for (let i = 0; i < b.obs.length; i++) {
    b.obs[i] = b.obs[i]! - mean;
    ss += b.obs[i]! ** 2;
  }
  const inv = 1 / Math.sqrt(ss || 1);
  for (let i = 0; i < b.obs.length; i++) b.obs[i] = b.obs[i]! * inv;
  return b;
}

function subsample(b: Band, every: number): Band {
  const pick = <T extends Float64Array>(a: T) => a.filter((_, i) => i % every === 0) as T;
  const obs = pick(b.obs);
  let mean = 0;
  for (const v of obs) mean += v;
  mean /= obs.length || 1;
  let ss = 0;
  for (let i = 0; i < obs.length; i++) {
    obs[i] = obs[i]! - mean;
    ss += obs[i]! ** 2;
  }
  const inv = 1 / Math.sqrt(ss || 1);
  for (let i = 0; i < obs.length; i++) obs[i] = obs[i]! * inv;
  return { k2: pick(b.k2), cos2: pick(b.cos2), sin2: pick(b.sin2), obs };
}

/** The band's rotational average as a Band of one "pixel" per radius (angle-free). */
function radialBand(spec: Float32Array, n: number, pixelSize: number, kmin: number, kmax: number): Band {
  const c = n / 2;
  const dk = 1 / (n * pixelSize);
  const sum = new Float64Array(c);
  const cnt = new Float64Array(c);
  for (let v = 0; v < n; v++) {
    for (let u = 0; u < n; u++) {
      if (u === c || v === c) continue;
      const r = Math.round(Math.hypot(u - c, v - c));
      if (r < c) {
        sum[r] = sum[r]! + spec[v * n + u]!;
        cnt[r] = cnt[r]! + 1;
      }
    }
  }
  const rs: number[] = [];
  for (let r = 0; r < c; r++) if (r * dk >= kmin && r * dk <= kmax && cnt[r]) rs.push(r);
  const b: Band = {
    k2: Float64Array.from(rs, (r) => (r * dk) ** 2),
    cos2: new Float64Array(rs.length),
    sin2: new Float64Array(rs.length),
    obs: Float64Array.from(rs, (r) => sum[r]! / cnt[r]!),
  };
  return subsample(b, 1);
}

/** Normalised cross-correlation of the band with CTF² for (mean defocus, half astigmatism, angle). */
function score(
  b: Band,
  a: number,
  bb: number,
  phase: number,
  mean: number,
  half: number,
  angle: number,
): number {
  const c2 = Math.cos(2 * angle) * half;
  const s2 = Math.sin(2 * angle) * half;
  let sm = 0;
  let smm = 0;
  let som = 0;
  const n = b.k2.length;
  for (let i = 0; i < n; i++) {
    const k2 = b.k2[i]!;
    const df = mean + b.cos2[i]! * c2 + b.sin2[i]! * s2;
    const s = Math.sin(a * df * k2 - bb * k2 * k2 + phase);
    const m = s * s;
    sm += m;
    smm += m * m;
    som += b.obs[i]! * m;
  }
  // obs has zero mean and unit norm, so the correlation is som / ‖m − m̄‖.
  const varM = smm - (sm * sm) / n;
  return varM > 0 ? som / Math.sqrt(varM) : 0;
}

export async function fitCtf(
  power: Float32Array,
  n: number,
  scope: Microscope,
  search: CtfSearch = {},
  ctl: KernelControl = {},
): Promise<CtfFit & { spectrum: Float32Array }> {
  const minRes = search.minResolution ?? 30;
  const maxRes = Math.max(search.maxResolution ?? 5, 2 * scope.pixelSize);
  const minDf = search.minDefocus ?? 3000;
  const maxDf = search.maxDefocus ?? 50000;
  const maxAst = search.maxAstigmatism ?? 3000;
  if (!(minRes > maxRes))
    throw new RangeError(`minResolution = ${minRes} Å must be larger than maxResolution = ${maxRes} Å`);
  if (!(maxDf > minDf && minDf >= 0))
    throw new RangeError(`defocus range ${minDf}..${maxDf} Å is not allowed: need 0 ≤ min < max`);
  const spec = subtractBackground(power, n);
  const band = bandOf(spec, n, scope.pixelSize, 1 / minRes, 1 / maxRes);
  if (band.k2.length < 100)
    throw new RangeError(
      `the fit band ${minRes}–${maxRes} Å holds too few spectrum pixels (${band.k2.length})`,
    );
  const { a, b, phase } = ctfConstants(scope);
  const f = (mean: number, half: number, angle: number) => score(band, a, b, phase, mean, half, angle);

  // 1. Defocus alone, on the rotational average (astigmatism blurs it, but not its ring positions' mean),
  //    in steps small enough that χ moves < 0.3 rad at the band's edge.
  const kmax2 = 1 / (maxRes * maxRes);
  const step1 = Math.max(10, 0.3 / (a * kmax2));
  const radial = radialBand(spec, n, scope.pixelSize, 1 / minRes, 1 / maxRes);
  let best = { mean: minDf, half: 0, angle: 0, s: -Infinity };
  for (let df = minDf; df <= maxDf; df += step1) {
    const s = score(radial, a, b, phase, df, 0, 0);
    if (s > best.s) best = { mean: df, half: 0, angle: 0, s };
  }
  throwIfAborted(ctl.signal, 'CTF estimation');
  ctl.onProgress?.(0.3, `defocus search: ${(best.mean / 1e4).toFixed(3)} µm`);

  // 2. Astigmatism grid around it, on every third band pixel (plenty for a coarse grid).
  const coarse = subsample(band, 3);
  const seed = best;
  best = { ...seed, s: score(coarse, a, b, phase, seed.mean, 0, 0) };
  const halfStep = Math.max(step1, 100);
  for (let half = halfStep; half <= maxAst / 2; half += halfStep) {
    for (let deg = 0; deg < 180; deg += 15) {
      const angle = (deg * Math.PI) / 180;
      for (let dm = -halfStep; dm <= halfStep; dm += halfStep) {
        const s = score(coarse, a, b, phase, seed.mean + dm, half, angle);
        if (s > best.s) best = { mean: seed.mean + dm, half, angle, s };
      }
    }
    throwIfAborted(ctl.signal, 'CTF estimation');
    await yieldToEventLoop();
  }
  ctl.onProgress?.(0.6, 'astigmatism search done');

  // 3. Simplex refinement of all three.
  const refined = nelderMead(
    (x) => -f(x[0]!, x[1]!, x[2]!),
    [best.mean, best.half || 50, best.angle],
    [step1, 100, 0.2],
    {
      maxIterations: 300,
      tolerance: 1e-7,
    },
  );
  const mean = refined.x[0]!;
  let half = refined.x[1]!;
  let angle = refined.x[2]!;
  if (half < 0) {
    half = -half;
    angle += Math.PI / 2;
  }
  let deg = ((angle * 180) / Math.PI) % 180;
  if (deg < 0) deg += 180;
  const fit: CtfParams = { defocusU: mean + half, defocusV: mean - half, astigmatismAngle: deg };
  ctl.onProgress?.(0.9, 'refined');
  const fitResolution = thonRingResolution(spec, n, scope, fit, minRes);
  ctl.onProgress?.(1, 'done');
  return { ...fit, score: -refined.value, fitResolution, spectrum: spec };
}

/**
 * The resolution to which the rings fit: the 1D profile of the spectrum against the astigmatism-
 * corrected frequency (each pixel's k scaled by √(Δf(θ)/Δf̄)), correlated with CTF² in a window of
 * two ring periods sliding outward; the fit ends where that correlation first drops below 0.5.
 */
export function thonRingResolution(
  spec: Float32Array,
  n: number,
  scope: Microscope,
  p: CtfParams,
  minRes: number,
): number {
  const c = n / 2;
  const dk = 1 / (n * scope.pixelSize);
  const meanDf = (p.defocusU + p.defocusV) / 2;
  const bins = c;
  const sum = new Float64Array(bins);
  const cnt = new Float64Array(bins);
  const t = (p.astigmatismAngle * Math.PI) / 180;
  for (let v = 0; v < n; v++) {
    for (let u = 0; u < n; u++) {
      if (u === c || v === c) continue;
      const kx = (u - c) * dk;
      const ky = (v - c) * dk;
      const th = Math.atan2(ky, kx);
      const df = 0.5 * (p.defocusU + p.defocusV + (p.defocusU - p.defocusV) * Math.cos(2 * (th - t)));
      const kEff = Math.hypot(kx, ky) * Math.sqrt(Math.max(df, 1) / Math.max(meanDf, 1));
      const bin = Math.round(kEff / dk);
      if (bin < bins) {
        sum[bin] = sum[bin]! + spec[v * n + u]!;
        cnt[bin] = cnt[bin]! + 1;
      }
    }
  }
  const { a, b, phase } = ctfConstants(scope);
  const profile = Array.from(sum, (s, i) => (cnt[i] ? s / cnt[i]! : 0));
  const model = profile.map((_, i) => {
    const k2 = (i * dk) ** 2;
    return Math.sin(a * meanDf * k2 - b * k2 * k2 + phase) ** 2;
  });
  const start = Math.max(2, Math.ceil(1 / minRes / dk));
  let lastGood = start;
  for (let i = start; i < bins; i++) {
    const k = i * dk;
    const slope = Math.abs(2 * a * meanDf * k - 4 * b * k ** 3);
    const period = slope > 0 ? Math.PI / slope / dk : bins;
    const w = Math.max(3, Math.min(bins, Math.round(period)));
    const lo = Math.max(1, i - w);
    const hi = Math.min(bins - 1, i + w);
    if (hi - lo < 4) break;
    const cc = correlation(profile, model, lo, hi);
    if (cc < 0.5) break;
    lastGood = i;
  }
  return 1 / (lastGood * dk);
}

function correlation(x: number[], y: number[], lo: number, hi: number): number {
  let mx = 0;
  let my = 0;
  const n = hi - lo + 1;
  for (let i = lo; i <= hi; i++) {
    mx += x[i]!;
    my += y[i]!;
  }
  mx /= n;
  my /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = lo; i <= hi; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : 0;
}
