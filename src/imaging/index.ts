/**
 * The imaging library under the scientific job types: formats (MRC, TIFF, HDF5, OME-Zarr) and
 * kernels (FFT, power spectra, CTF estimation, motion correction, conversion). Nothing here touches
 * the store or the worker; long kernels take { signal, onProgress }.
 */
export { ImageFormatError, KernelAbortedError } from './errors.js';
export type { KernelControl, ProgressFn } from './progress.js';
export type { ImageStack, PixelSize, PixelType, PlaneArray, SpaceUnit } from './types.js';
export { openStack, stackFormatOf, type StackFormat } from './formats/openStack.js';
export { MrcStack, MrcWriter, readMrcHeader, writeMrc } from './formats/mrc.js';
export { TiffStack } from './formats/tiff.js';
export { Hdf5Stack } from './formats/hdf5.js';
export { OmeZarrReader } from './formats/omeZarr.js';
export { writeGrayPng } from './formats/png.js';
export { convertToOmeZarr, type ConvertOptions, type ConvertResult } from './convert/convertToOmeZarr.js';
export { RealFft2d, isFftSize, nextFftSize, prevFftSize } from './kernels/fft.js';
export {
  powerSpectrum,
  logPowerSpectrum,
  writePowerSpectrum,
  type PowerSpectrum,
} from './kernels/powerSpectrum.js';
export { estimateCtf, writeCtfDiagnostic, type CtfOptions, type CtfResult } from './kernels/ctf.js';
export type { Microscope, CtfParams } from './kernels/ctfModel.js';
export {
  correctMotion,
  writeMotionOutputs,
  type MotionOptions,
  type MotionResult,
} from './kernels/motion.js';
export type { DoseWeighting } from './kernels/doseWeight.js';
