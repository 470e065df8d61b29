/**
 * The refinement steps of the alignment: once every frame sits within a pixel of its peak, the
 * cross-correlation is needed only at the 5 × 5 shifts around the origin (the best of the centre and
 * its four neighbours, and a parabola through each side). Those 25 values are sums over the
 * spectrum, evaluated directly in the pass that forms the product — no inverse FFT. Per half-plane
 * column kx the pass keeps five sums over ky, A_dy(kx) = Σ prod(kx, ky)·e^{2πi·ky·dy/h} for
 * dy = −2 … 2; then CC(dx, dy) = Σ_kx c(kx)·Re(A_dy(kx)·e^{2πi·kx·dx/w}), c = 1 at kx = 0 and w/2,
 * else 2 (the other half-plane). That is the inverse FFT's value at (dx, dy) up to its 1/(w·h),
 * which a peak's position does not depend on.
 */
import type { PhaseRamp } from './motionAlign.js';

/** Doubles per half-plane column: A_dy for dy = −2 … 2, (re, im) each. */
export const LOCAL_SUMS = 10;

/** e^{2πi·k/n} and e^{2πi·2k/n}, k = 0 … count − 1, as (cos, sin) pairs. */
export function unitTwiddles(n: number, count: number): { one: Float64Array; two: Float64Array } {
  const one = new Float64Array(2 * count);
  const two = new Float64Array(2 * count);
  for (let k = 0; k < count; k++) {
    const a = (2 * Math.PI * k) / n;
    one[2 * k] = Math.cos(a);
    one[2 * k + 1] = Math.sin(a);
    two[2 * k] = Math.cos(2 * a);
    two[2 * k + 1] = Math.sin(2 * a);
  }
  return { one, two };
}

/**
 * First sum += mine·(M − 1) (the previous frame's move, as addShiftDelta, in the same pass; M = 1
 * for none), then mine = spec·P and, for columns k0 … k1 − 1, the five sums of prod = mine·conj(sum − mine) into
 * `sums` (LOCAL_SUMS doubles per column, from float LOCAL_SUMS·kx). Each column's sums depend only
 * on that column, so a split of the columns among threads gives the same numbers.
 */
export function correlateLocal(
  spec: Float32Array,
  sum: Float32Array,
  ramp: PhaseRamp,
  move: PhaseRamp,
  h: number,
  ey: { one: Float64Array; two: Float64Array },
  mine: Float32Array,
  sums: Float64Array,
  k0: number,
  k1: number,
): void {
  const { x: px, y: py } = ramp;
  const { x: mx, y: my } = move;
  const { one, two } = ey;
  for (let kx = k0; kx < k1; kx++) {
    const cx = px[2 * kx]!;
    const sxn = px[2 * kx + 1]!;
    const mcx = mx[2 * kx]!;
    const msx = mx[2 * kx + 1]!;
    const base = 2 * kx * h;
    let a0r = 0;
    let a0i = 0;
    let p1r = 0;
    let p1i = 0;
    let m1r = 0;
    let m1i = 0;
    let p2r = 0;
    let p2i = 0;
    let m2r = 0;
    let m2i = 0;
    for (let ky = 0; ky < h; ky++) {
      const cy = py[2 * ky]!;
      const sy = py[2 * ky + 1]!;
      const pr = cx * cy - sxn * sy;
      const pi = cx * sy + sxn * cy;
      const i = base + 2 * ky;
      const mcy = my[2 * ky]!;
      const msy = my[2 * ky + 1]!;
      const mr = mcx * mcy - msx * msy - 1;
      const mi = mcx * msy + msx * mcy;
      const or = mine[i]!;
      const oi = mine[i + 1]!;
      // Rounded as the float32 sum stores them, as a separate pass would read them back.
      const sr = Math.fround(sum[i]! + or * mr - oi * mi);
      const si = Math.fround(sum[i + 1]! + or * mi + oi * mr);
      sum[i] = sr;
      sum[i + 1] = si;
      const re = spec[i]!;
      const im = spec[i + 1]!;
      const ar = re * pr - im * pi;
      const ai = re * pi + im * pr;
      mine[i] = ar;
      mine[i + 1] = ai;
      const br = sr - ar;
      const bi = si - ai;
      const qr = ar * br + ai * bi;
      const qi = ai * br - ar * bi;
      a0r += qr;
      a0i += qi;
      const c1 = one[2 * ky]!;
      const s1 = one[2 * ky + 1]!;
      const c2 = two[2 * ky]!;
      const s2 = two[2 * ky + 1]!;
      const u1 = qr * c1;
      const v1 = qi * s1;
      const w1 = qr * s1;
      const z1 = qi * c1;
      p1r += u1 - v1;
      p1i += w1 + z1;
      m1r += u1 + v1;
      m1i += z1 - w1;
      const u2 = qr * c2;
      const v2 = qi * s2;
      const w2 = qr * s2;
      const z2 = qi * c2;
      p2r += u2 - v2;
      p2i += w2 + z2;
      m2r += u2 + v2;
      m2i += z2 - w2;
    }
    const o = LOCAL_SUMS * kx;
    sums[o] = m2r;
    sums[o + 1] = m2i;
    sums[o + 2] = m1r;
    sums[o + 3] = m1i;
    sums[o + 4] = a0r;
    sums[o + 5] = a0i;
    sums[o + 6] = p1r;
    sums[o + 7] = p1i;
    sums[o + 8] = p2r;
    sums[o + 9] = p2i;
  }
}

/**
 * The 25 cross-correlation values from every column's sums, written as subPixelPeak reads a band of
 * radius 1: row dy + 2 (dy = −2 … 2), column dx mod w. Other entries are left as they are (never read).
 */
export function localBand(
  sums: Float64Array,
  w: number,
  ex: { one: Float64Array; two: Float64Array },
  band: Float64Array,
): Float64Array {
  const wc = w / 2 + 1;
  const { one, two } = ex;
  for (let j = 0; j < 5; j++) {
    let c0 = 0;
    let cp1 = 0;
    let cm1 = 0;
    let cp2 = 0;
    let cm2 = 0;
    for (let kx = 0; kx < wc; kx++) {
      const c = kx === 0 || kx === wc - 1 ? 1 : 2;
      const ar = sums[LOCAL_SUMS * kx + 2 * j]! * c;
      const ai = sums[LOCAL_SUMS * kx + 2 * j + 1]! * c;
      // Re(A·e^{±iθ}) = ar·cos θ ∓ ai·sin θ.
      const r1 = ar * one[2 * kx]!;
      const i1 = ai * one[2 * kx + 1]!;
      const r2 = ar * two[2 * kx]!;
      const i2 = ai * two[2 * kx + 1]!;
      c0 += ar;
      cp1 += r1 - i1;
      cm1 += r1 + i1;
      cp2 += r2 - i2;
      cm2 += r2 + i2;
    }
    const row = j * w;
    band[row] = c0;
    band[row + 1] = cp1;
    band[row + w - 1] = cm1;
    band[row + 2] = cp2;
    band[row + w - 2] = cm2;
  }
  return band;
}
