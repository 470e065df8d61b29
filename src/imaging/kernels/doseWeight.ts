/**
 * Exposure-dependent filter of movie frames (Grant & Grigorieff, eLife 2015): a spatial frequency k
 * (Å⁻¹) fades with accumulated exposure N (e⁻/Å²) as q = exp(−N / (2 Nₑ(k))), where the critical
 * exposure is Nₑ(k) = 0.245 · k^−1.665 + 2.81 at 300 kV, scaled by 0.8 at 200 kV.
 */
export interface DoseWeighting {
  /** e⁻/Å² per frame. */
  dosePerFrame: number;
  /** Exposure before the first frame, e⁻/Å²; default 0. */
  preExposure?: number;
  voltageKv: number;
}

export function criticalExposure(k: number, voltageKv: number): number {
  // Measured at 300 kV; 200 kV damages faster (factor 0.8); linear between and beyond.
  const scale = 0.8 + (0.2 * (voltageKv - 200)) / 100;
  return (0.245 * Math.pow(k, -1.665) + 2.81) * scale;
}

/** Mid-frame accumulated exposure of frame i. */
export function frameExposure(i: number, w: DoseWeighting): number {
  return (w.preExposure ?? 0) + (i + 0.5) * w.dosePerFrame;
}

export function doseFilter(k: number, exposure: number, voltageKv: number): number {
  if (k <= 0) return 1;
  return Math.exp(-exposure / (2 * criticalExposure(k, voltageKv)));
}
