import { describe, expect, it } from 'vitest';
import {
  isFftSize,
  nextFftSize,
  prevFftSize,
  RealFft2d,
  spectrumIndex,
  toRowMajorSpectrum,
} from '../../src/imaging/kernels/fft.js';
import { findPython, runPythonBytes } from '../fixtures/imaging/python.js';

function randomImage(w: number, h: number, seed = 1): Float32Array {
  let s = seed;
  return Float32Array.from({ length: w * h }, () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

/** Direct O(N²) DFT of one coefficient, in float64. */
function dft(img: Float32Array, w: number, h: number, kx: number, ky: number): [number, number] {
  let re = 0;
  let im = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const a = -2 * Math.PI * ((kx * x) / w + (ky * y) / h);
      re += img[y * w + x]! * Math.cos(a);
      im += img[y * w + x]! * Math.sin(a);
    }
  }
  return [re, im];
}

describe('RealFft2d', () => {
  it('sizes: 2^a 3^b 5^c, multiples of 32', () => {
    expect(isFftSize(96)).toBe(true);
    expect(isFftSize(100)).toBe(false);
    expect(isFftSize(224)).toBe(false);
    expect(nextFftSize(3710)).toBe(3840);
    expect(prevFftSize(3710)).toBe(3456);
  });

  it('matches a direct DFT on a non-square, non-power-of-two image, in the transposed layout', async () => {
    const w = 96;
    const h = 48;
    const img = randomImage(w, h);
    const fft = await RealFft2d.create(w, h);
    const spec = fft.forward(img, new Float32Array(fft.spectrumLength));
    for (const [kx, ky] of [
      [0, 0],
      [1, 0],
      [0, 5],
      [7, 13],
      [48, 0],
      [48, 47],
      [31, 40],
    ] as const) {
      const [re, im] = dft(img, w, h, kx, ky);
      const i = spectrumIndex(kx, ky, h);
      expect(spec[i]).toBeCloseTo(re, 3);
      expect(spec[i + 1]).toBeCloseTo(im, 3);
    }
    const back = fft.inverse(spec);
    let err = 0;
    for (let i = 0; i < img.length; i++) err = Math.max(err, Math.abs(back[i]! - img[i]!));
    expect(err).toBeLessThan(1e-5);
    fft.dispose();
  });

  it('inverseRows gives the same rows as inverse, wrapping past the top, and forward reads a window', async () => {
    const w = 64;
    const h = 48;
    const big = randomImage(80, 60, 3);
    const img = new Float32Array(w * h);
    for (let y = 0; y < h; y++) img.set(big.subarray((y + 5) * 80 + 9, (y + 5) * 80 + 9 + w), y * w);
    const fft = await RealFft2d.create(w, h);
    const spec = fft.forward(img, new Float32Array(fft.spectrumLength));
    const windowed = fft.forward(big, undefined, { stride: 80, x0: 9, y0: 5 });
    expect(Array.from(windowed)).toEqual(Array.from(spec));
    const full = fft.inverse(spec);
    // 21 rows from y = −7 (odd count: the JS path; wrapping: row by row) and 16 from y = 4 (SIMD).
    for (const [y0, count] of [
      [-7, 21],
      [4, 16],
    ] as const) {
      const band = fft.inverseRows(spec, y0, count);
      for (let j = 0; j < count; j++) {
        const y = (y0 + j + h) % h;
        for (let x = 0; x < w; x++) expect(band[j * w + x]).toBeCloseTo(full[y * w + x]!, 6);
      }
    }
    expect(() => fft.forward(big, undefined, { stride: 80, x0: 20, y0: 5 })).toThrow('does not fit');
    fft.dispose();
  });

  it('ships the transpose kernel its .wat source assembles to', async () => {
    const { assembleTranspose } = await import('../../scripts/buildTransposeWasm.mjs');
    const { TRANSPOSE_WASM_BASE64 } = await import('../../src/imaging/kernels/transposeWasm.js');
    expect(await assembleTranspose()).toBe(TRANSPOSE_WASM_BASE64);
  });

  it("forwardRowMajor gives numpy's layout bit for bit as the JS conversion does, windowed too", async () => {
    const [w, h] = [96, 48];
    const big = randomImage(w + 7, h + 5, 21);
    const fft = await RealFft2d.create(w, h);
    const window = { stride: w + 7, x0: 3, y0: 2 };
    const want = toRowMajorSpectrum(fft.forward(big, undefined, window), w, h);
    const out = new Float32Array(fft.spectrumLength);
    expect(fft.forwardRowMajor(big, out, window)).toBe(out);
    expect(out).toEqual(want);
    const img = randomImage(w, h, 5);
    expect(fft.forwardRowMajor(img)).toEqual(toRowMajorSpectrum(fft.forward(img), w, h));
    fft.dispose();
  });

  it('refuses sizes PFFFT cannot do', async () => {
    await expect(RealFft2d.create(100, 64)).rejects.toThrow('FFT size 100×64 is not allowed');
  });

  const py = findPython(['numpy']);
  it.skipIf(!py)('agrees with numpy.fft.rfft2', async () => {
    const w = 128;
    const h = 80;
    const img = randomImage(w, h, 7);
    const fft = await RealFft2d.create(w, h);
    const ours = fft.forwardRowMajor(img);
    const out = runPythonBytes(
      py!,
      `import numpy as np, sys
a = np.frombuffer(sys.stdin.buffer.read(), dtype=np.float32).reshape(${h}, ${w})
f = np.fft.rfft2(a.astype(np.float64))
sys.stdout.buffer.write(np.stack([f.real, f.imag], -1).astype(np.float32).tobytes())`,
      new Uint8Array(img.buffer),
    );
    const ref = new Float32Array(out.buffer, out.byteOffset, out.byteLength / 4);
    expect(ref.length).toBe(ours.length);
    let err = 0;
    let max = 0;
    for (let i = 0; i < ref.length; i++) {
      err = Math.max(err, Math.abs(ref[i]! - ours[i]!));
      max = Math.max(max, Math.abs(ref[i]!));
    }
    expect(err / max).toBeLessThan(1e-5);
    fft.dispose();
  });
});
