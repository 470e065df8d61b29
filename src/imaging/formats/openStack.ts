import { extname } from 'node:path';
import type { ImageStack } from '../types.js';
import type { Hdf5OpenOptions } from './hdf5.js';
import { MrcStack } from './mrc.js';
import { TiffStack } from './tiff.js';

export type StackFormat = 'mrc' | 'tiff' | 'hdf5';

const BY_EXTENSION: Record<string, StackFormat> = {
  '.mrc': 'mrc',
  '.mrcs': 'mrc',
  '.st': 'mrc',
  '.ali': 'mrc',
  '.map': 'mrc',
  '.rec': 'mrc',
  '.tif': 'tiff',
  '.tiff': 'tiff',
  '.h5': 'hdf5',
  '.hdf5': 'hdf5',
  '.hdf': 'hdf5',
  '.emd': 'hdf5',
  '.nxs': 'hdf5',
};

export function stackFormatOf(path: string): StackFormat | undefined {
  return BY_EXTENSION[extname(path).toLowerCase()];
}

/** Opens an MRC, TIFF or HDF5 stack, chosen by the file's extension unless `format` says. */
export async function openStack(
  path: string,
  opts: { format?: StackFormat } & Hdf5OpenOptions = {},
): Promise<ImageStack> {
  const format = opts.format ?? stackFormatOf(path);
  switch (format) {
    case 'mrc':
      return MrcStack.open(path);
    case 'tiff':
      return TiffStack.open(path);
    case 'hdf5': {
      // h5wasm compiles its WebAssembly when imported: only HDF5 inputs pay for it.
      const { Hdf5Stack } = await import('./hdf5.js');
      return Hdf5Stack.open(path, opts.dataset ? { dataset: opts.dataset } : {});
    }
    default:
      throw new RangeError(
        `input ${path}: cannot tell its format from the extension "${extname(path)}"; allowed: ${Object.keys(BY_EXTENSION).join(', ')} (or pass format: mrc | tiff | hdf5)`,
      );
  }
}
