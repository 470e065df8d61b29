import { describe, expect, it } from 'vitest';
import { RealFft2d, spectrumIndex } from '../../src/imaging/kernels/fft.js';
import {
  alignFrames,
  LocalCorrelator,
  searchBand,
  shiftSpectrum,
} from '../../src/imaging/kernels/motionAlign.js';
import { coarseSize, cropSpectrum } from '../../src/imaging/kernels/motionCoarse.js';

/** A smooth random image's spectrum (a Gaussian low-pass, so the cross-correlation peak is a few pixels wide). */
async function smoothSpectrum(fft: RealFft2d): Promise<Float32Array> {
  const { width: w, height: h } = fft;
  let s = 17;
  const img = new Float32Array(w * h);
  for (let i = 0; i < img.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    img[i] = s / 2 ** 32;
  }
  const spec = fft.forward(img, new Float32Array(fft.spectrumLength));
  for (let kx = 0; kx < fft.wc; kx++) {
    for (let ky = 0; ky < h; ky++) {
      const fy = (ky < h / 2 ? ky : ky - h) / h;
      const g = Math.exp(-2 * Math.PI ** 2 * 1.5 ** 2 * ((kx / w) ** 2 + fy ** 2));
      const i = spectrumIndex(kx, ky, h);
      spec[i] = spec[i]! * g;
      spec[i + 1] = spec[i + 1]! * g;
    }
  }
  spec[0] = spec[1] = 0;
  return spec;
}

describe('coarse to fine alignment', () => {
  it('takes a coarse grid only where both halves are FFT sizes of 128 or more', () => {
    expect(coarseSize(1024, 1024)).toEqual({ w: 512, h: 512 });
    expect(coarseSize(384, 256)).toEqual({ w: 192, h: 128 });
    expect(coarseSize(256, 192)).toBeUndefined();
    expect(coarseSize(288, 288)).toBeUndefined(); // 144 is not a multiple of 32
  });

  it('crops a spectrum to the frequencies the half-size grid holds', async () => {
    const fft = await RealFft2d.create(64, 48);
    try {
      const spec = await smoothSpectrum(fft);
      const out = cropSpectrum(spec, 48, 32, 24, new Float32Array(2 * 17 * 24));
      for (let kx = 0; kx <= 16; kx++) {
        for (let ky = -12; ky < 12; ky++) {
          const d = spectrumIndex(kx, (ky + 24) % 24, 24);
          const s = spectrumIndex(kx, (ky + 48) % 48, 48);
          expect([out[d], out[d + 1]], `(${kx}, ${ky})`).toEqual([spec[s], spec[s + 1]]);
        }
      }
    } finally {
      fft.dispose();
    }
  });

  it('a start that is pixels off for one frame still ends at the true shifts: that frame is searched again', async () => {
    const [w, h] = [96, 96];
    const fft = await RealFft2d.create(w, h);
    try {
      const base = await smoothSpectrum(fft);
      const drift = Array.from({ length: 6 }, (_, f) => ({ x: 1.5 * f, y: -f }));
      // Frame f is the image moved by drift[f]; shifting it by −drift[f] aligns it.
      const specs = drift.map((d) => {
        const out = new Float32Array(fft.spectrumLength);
        shiftSpectrum(base, w, h, d.x, d.y, out);
        return out;
      });
      const start = drift.map((d) => ({ x: -d.x, y: -d.y }));
      start[3] = { x: start[3]!.x + 3, y: start[3]!.y - 2 };
      const { radius } = searchBand(w, h, 8);
      const opts = { maxShift: 8, iterations: 2, tolerance: 0.001 };
      const r = await alignFrames(
        6,
        w,
        radius,
        new LocalCorrelator(specs, fft, radius, start),
        opts,
        {},
        start,
      );
      r.shifts.forEach((s, f) => {
        expect(s.x, `frame ${f} x`).toBeCloseTo(-drift[f]!.x, 1);
        expect(s.y, `frame ${f} y`).toBeCloseTo(-drift[f]!.y, 1);
      });
    } finally {
      fft.dispose();
    }
  });
});
