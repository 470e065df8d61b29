/**
 * The imaging job types' modules and defaults. The registry applies them when the settings load
 * (without importing the type modules); the settings' jobTypes.<name> keys win over them.
 *
 * Kernels hold whole frames, spectra and FFT plans, and a site program may use any amount of memory:
 * each job runs in a child of its own (`isolated`), whose peak RSS is the job's.
 */
import type { ExecutionMode } from '../../types.js';

const MIN = 60_000;

export interface ImagingTypeDefaults {
  mode: ExecutionMode;
  timeoutMs: number;
  maxAttempts: number;
}

const KERNEL = { mode: 'isolated', timeoutMs: 60 * MIN, maxAttempts: 2 } as const;

export const IMAGING_TYPE_DEFAULTS = {
  fft_power_spectrum: KERNEL,
  ctf_estimation: KERNEL,
  motion_correction: KERNEL,
  external_program: { mode: 'isolated', timeoutMs: 240 * MIN, maxAttempts: 2 },
} as const satisfies Record<string, ImagingTypeDefaults>;

export type ImagingTypeName = keyof typeof IMAGING_TYPE_DEFAULTS;

/** Each type's module, beside this file (without extension). */
export const IMAGING_TYPE_MODULES: Record<ImagingTypeName, string> = {
  fft_power_spectrum: 'fftPowerSpectrum',
  ctf_estimation: 'ctfEstimation',
  motion_correction: 'motionCorrection',
  external_program: 'externalProgram',
};
