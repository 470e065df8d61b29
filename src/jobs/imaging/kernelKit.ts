/**
 * What the imaging kernel job types share: image path fields, reading one plane, the kernel's progress
 * and cancel wired to the job, outputs checked and written whole, and the peak RSS the result records.
 * The imaging library loads when a job runs (`import()`), not when jobctl reads the schemas.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import type { z } from 'zod';
import type { TypedJobContext } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { lazySchema } from '../lazyZod.js';
import { DataInputError } from '../lib/errors.js';

export { IMAGING_TYPE_DEFAULTS } from './typeDefaults.js';

const IMAGE_EXTENSIONS = ['.mrc', '.mrcs', '.st', '.tif', '.tiff'];

/** A micrograph or movie in a data dir: MRC or TIFF, told by its extension. */
export function imageInput(description: string): z.ZodType<string, string> {
  return dataPath({ mode: 'read', kind: 'file', mustExist: true, description }).refine(
    (p) => IMAGE_EXTENSIONS.includes(extname(p).toLowerCase()),
    { error: `must be an MRC or TIFF file (extension ${IMAGE_EXTENSIONS.join(', ')})` },
  );
}

/** An output file in a data dir with a given extension. */
export function outputFile(ext: string, description: string): z.ZodType<string, string> {
  return dataPath({ mode: 'write', description }).refine((p) => extname(p).toLowerCase() === ext, {
    error: `must be a file path ending in ${ext}`,
  });
}

export const plane = lazySchema((z) =>
  z
    .number()
    .int()
    .min(0)
    .default(0)
    .describe('which plane (section, page, frame) of the file to use; 0 for a single image'),
);

export const tileSize = lazySchema((z) =>
  z
    .number()
    .int()
    .min(32)
    .max(8192)
    .optional()
    .describe(
      'side of the square tiles whose spectra are averaged (2^a·3^b·5^c, a multiple of 32: 256, 512, ...)',
    ),
);

/** Peak resident memory of this process so far: in an isolated child, the job's own peak. */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** A kernel's progress (fraction of [from, from + span]) as the job's percent, and the job's cancel. */
export function kernelControl(
  ctx: TypedJobContext,
  from = 0,
  span = 1,
): { signal: AbortSignal; onProgress: (fraction: number, message: string) => void } {
  return {
    signal: ctx.signal,
    onProgress: (f, message) => ctx.progress(Math.round((from + f * span) * 1000) / 10, message),
  };
}

/**
 * Runs a kernel step; a RangeError (a parameter the kernel refuses for this image, a plane out of
 * range) becomes a DataInputError: the same input fails the same way, so it is not retried.
 */
export async function kernelStep<T>(type: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof RangeError) throw new DataInputError(`${type}: ${paramNames(err.message)}`);
    throw err;
  }
}

/** The kernels name their options in camelCase (`tileSize = 1024 is ...`); the job's params are snake_case. */
function paramNames(message: string): string {
  return message
    .replace(/doseWeighting\./g, '')
    .replace(
      /(?<![.\w])([a-z]+(?:[A-Z][a-z]*)+|tiles|iterations|tolerance)(?= = )/g,
      (name) => `params.${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`,
    );
}

export interface Plane {
  image: Float32Array;
  width: number;
  height: number;
  depth: number;
  /** Å per pixel from the file's header, when it gives one. */
  pixelSize: number | undefined;
}

/** Reads one plane of an MRC or TIFF file as float32. Corrupt or truncated files throw ImageFormatError. */
export async function readPlane(path: string, index: number): Promise<Plane> {
  const { openStack } = await import('../../imaging/formats/openStack.js');
  const { toFloat32 } = await import('../../imaging/types.js');
  const stack = await openStack(path);
  try {
    if (index >= stack.depth)
      throw new RangeError(
        `params.plane = ${index} is out of range: ${path} has planes 0..${stack.depth - 1}`,
      );
    const image = toFloat32(await stack.readPlane(index));
    const ps = stack.pixelSize;
    return {
      image,
      width: stack.width,
      height: stack.height,
      depth: stack.depth,
      pixelSize: ps?.unit === 'angstrom' && ps.x > 0 ? ps.x : undefined,
    };
  } finally {
    await stack.close();
  }
}

/**
 * Checks an output path right before writing (still inside the paths the input declared for
 * writing) and makes its folder. The imaging writers build each file under a temporary name beside
 * it and rename it into place, so an output is whole or absent.
 */
export async function prepareOutput(ctx: TypedJobContext, path: string): Promise<string> {
  const real = await ctx.checkWrite(path);
  await mkdir(dirname(real), { recursive: true });
  return real;
}
