/**
 * What each exposure of a session becomes: motion_correction of its movie, then ctf_estimation and
 * fft_power_spectrum of the aligned sum, as three chained jobs keyed `<exposure id>:<step>`. Params use
 * the kernel job types' field names; outputs go to `<output dir>/<exposure id>/`.
 */
import { join } from 'node:path';
import type { Exposure } from './types.js';

export interface Microscope {
  /** kV; an exposure's own voltage wins. */
  voltage: number;
  /** Spherical aberration, mm. */
  cs: number;
  amplitudeContrast: number;
}

export interface ExposureJob {
  key: string;
  type: 'motion_correction' | 'ctf_estimation' | 'fft_power_spectrum';
  params: Record<string, unknown>;
  dependsOn?: string[];
}

export const STEPS = ['motion', 'ctf', 'fft'] as const;

/** The exposure id a job key belongs to, or null when the key is not an exposure step's. */
export function exposureOfKey(key: string): string | null {
  const m = /^(.+):(motion|ctf|fft)$/.exec(key);
  return m ? m[1]! : null;
}

export function exposureJobs(e: Exposure, outputDir: string, scope: Microscope): ExposureJob[] {
  const out = join(outputDir, e.id);
  const sum = join(out, `${e.id}_sum.mrc`);
  const voltage = e.voltage ?? scope.voltage;
  const dosePerFrame = e.dose !== null && e.dose > 0 && e.frames >= 1 ? e.dose / e.frames : undefined;
  return [
    {
      key: `${e.id}:motion`,
      type: 'motion_correction',
      params: {
        input: e.movie,
        output_sum: sum,
        output_shifts: join(out, `${e.id}_shifts.json`),
        pixel_size: e.pixelSize,
        voltage_kv: voltage,
        ...(dosePerFrame !== undefined ? { dose_per_frame: dosePerFrame } : {}),
      },
    },
    {
      key: `${e.id}:ctf`,
      type: 'ctf_estimation',
      params: {
        input: sum,
        diagnostic_png: join(out, `${e.id}_ctf.png`),
        pixel_size: e.pixelSize,
        voltage_kv: voltage,
        cs_mm: scope.cs,
        amplitude_contrast: scope.amplitudeContrast,
      },
      dependsOn: [`${e.id}:motion`],
    },
    {
      key: `${e.id}:fft`,
      type: 'fft_power_spectrum',
      params: {
        input: sum,
        output_mrc: join(out, `${e.id}_ps.mrc`),
        output_png: join(out, `${e.id}_ps.png`),
      },
      dependsOn: [`${e.id}:ctf`],
    },
  ];
}
