import { allocPlane, type PixelType, type PlaneArray } from '../types.js';

const INTEGER: Record<PixelType, boolean> = {
  int8: true,
  uint8: true,
  int16: true,
  uint16: true,
  int32: true,
  uint32: true,
  float32: false,
  float64: false,
};

/**
 * 2× in-plane downsampling by the mean of each 2×2 block. An odd last row or column is averaged
 * over the pixels it has, so the output is ceil(w/2)×ceil(h/2). Integer types round half up.
 */
export function downsample2x(
  src: ArrayLike<number>,
  width: number,
  height: number,
  dtype: PixelType,
  into?: PlaneArray,
): { data: PlaneArray; width: number; height: number } {
  const w2 = Math.ceil(width / 2);
  const h2 = Math.ceil(height / 2);
  const out = into && into.length === w2 * h2 ? into : allocPlane(dtype, w2 * h2);
  const round = INTEGER[dtype];
  for (let y = 0; y < h2; y++) {
    const r0 = 2 * y * width;
    const twoRows = 2 * y + 1 < height;
    const r1 = twoRows ? r0 + width : r0;
    const o = y * w2;
    for (let x = 0; x < w2; x++) {
      const c0 = 2 * x;
      const twoCols = c0 + 1 < width;
      const c1 = twoCols ? c0 + 1 : c0;
      const n = (twoRows ? 2 : 1) * (twoCols ? 2 : 1);
      let s = src[r0 + c0]!;
      if (twoCols) s += src[r0 + c1]!;
      if (twoRows) {
        s += src[r1 + c0]!;
        if (twoCols) s += src[r1 + c1]!;
      }
      const mean = s / n;
      out[o + x] = round ? Math.floor(mean + 0.5) : mean;
    }
  }
  return { data: out, width: w2, height: h2 };
}

/** Shapes of a 2× pyramid: halve until the smallest side is under `minSide` (that level included). */
export function pyramidShapes(
  width: number,
  height: number,
  minSide = 256,
): { width: number; height: number }[] {
  const out = [{ width, height }];
  let w = width;
  let h = height;
  while (Math.min(w, h) >= minSide && Math.min(w, h) > 1) {
    w = Math.ceil(w / 2);
    h = Math.ceil(h / 2);
    out.push({ width: w, height: h });
  }
  return out;
}
