import { rename, writeFile } from 'node:fs/promises';
import { PNG } from 'pngjs';

/** Value at quantile q (0..1) of a sample of at most ~65k values: cheap and robust for display. */
export function quantiles(data: ArrayLike<number>, qs: number[]): number[] {
  const step = Math.max(1, Math.floor(data.length / 65536));
  const sample: number[] = [];
  for (let i = 0; i < data.length; i += step) if (Number.isFinite(data[i]!)) sample.push(data[i]!);
  sample.sort((a, b) => a - b);
  return qs.map(
    (q) => sample[Math.min(sample.length - 1, Math.max(0, Math.round(q * (sample.length - 1))))] ?? 0,
  );
}

/**
 * Encodes a float image as 8-bit grayscale PNG, mapping [lo, hi] to [0, 255] (by default the
 * 0.5% and 99.5% quantiles, so a few extreme pixels do not wash the picture out).
 */
export function encodeGrayPng(
  data: ArrayLike<number>,
  width: number,
  height: number,
  range?: [number, number],
): Buffer {
  const [lo, hi] = range ?? (quantiles(data, [0.005, 0.995]) as [number, number]);
  const scale = hi > lo ? 255 / (hi - lo) : 0;
  const png = new PNG({ width, height, colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
  const buf = Buffer.alloc(width * height);
  for (let i = 0; i < width * height; i++) {
    const v = (data[i]! - lo) * scale;
    buf[i] = v <= 0 || !Number.isFinite(v) ? 0 : v >= 255 ? 255 : Math.round(v);
  }
  png.data = buf;
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, bitDepth: 8, inputHasAlpha: false });
}

export async function writeGrayPng(
  path: string,
  data: ArrayLike<number>,
  width: number,
  height: number,
  range?: [number, number],
): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, encodeGrayPng(data, width, height, range));
  await rename(tmp, path);
}
