import { describe, expect, it } from 'vitest';
import { RealFft2d } from '../../src/imaging/kernels/fft.js';
import { LocalCorrelator } from '../../src/imaging/kernels/motionAlign.js';

/** Random real images' spectra, as the alignment keeps them. */
async function spectra(w: number, h: number, n: number): Promise<Float32Array[]> {
  const fft = await RealFft2d.create(w, h);
  let s = 9;
  const out: Float32Array[] = [];
  for (let f = 0; f < n; f++) {
    const img = new Float32Array(w * h);
    for (let i = 0; i < img.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      img[i] = s / 2 ** 32 + 0.3 * Math.sin((i % w) / 5 + f);
    }
    out.push(fft.forward(img, new Float32Array(fft.spectrumLength)));
  }
  fft.dispose();
  return out;
}

describe('local alignment steps', () => {
  it('give the 5 × 5 cross-correlation around the origin that the inverse FFT gives (up to its 1/(w·h))', async () => {
    const [w, h, radius] = [64, 48, 4];
    const specs = await spectra(w, h, 4);
    const fft = await RealFft2d.create(w, h);
    try {
      const shift = { x: 0.7, y: -1.3 };
      // Fresh correlators: the same sum and no previous move, so both see the same product.
      const full = Float32Array.from(
        new LocalCorrelator(specs, fft, radius).band(2, shift, undefined, false),
      );
      const local = new LocalCorrelator(specs, fft, radius).band(2, shift, undefined, true);
      let peak = 0;
      for (const v of full) peak = Math.max(peak, Math.abs(v));
      for (let dy = -2; dy <= 2; dy++) {
        for (let dx = -2; dx <= 2; dx++) {
          const x = (dx + w) % w;
          const fromFft = full[(dy + radius + 1) * w + x]!;
          const direct = local[(dy + 2) * w + x]! / (w * h);
          expect(Math.abs(direct - fromFft), `(${dx}, ${dy})`).toBeLessThan(1e-5 * peak);
        }
      }
    } finally {
      fft.dispose();
    }
  });
});
