/**
 * Zarr v2 chunk encoding and atomic chunk files. Blosc comes from numcodecs (the codec library
 * of the zarr.js family, a WebAssembly build); zlib from Node itself.
 */
import { deflateSync, inflateSync } from 'node:zlib';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import Blosc from 'numcodecs/blosc';
import type { PixelType } from '../types.js';

export type Compression = 'blosc-lz4' | 'blosc-zstd' | 'zlib' | 'none';
export const COMPRESSIONS: Compression[] = ['blosc-lz4', 'blosc-zstd', 'zlib', 'none'];

export type ZarrCompressor =
  | { id: 'blosc'; cname: 'lz4' | 'zstd'; clevel: number; shuffle: number; blocksize: number }
  | { id: 'zlib'; level: number }
  | null;

export function compressorFor(c: Compression, itemsize: number): ZarrCompressor {
  switch (c) {
    case 'blosc-lz4':
    case 'blosc-zstd':
      // Byte shuffle groups the bytes of multi-byte pixels, which is what makes image data compress.
      return {
        id: 'blosc',
        cname: c === 'blosc-lz4' ? 'lz4' : 'zstd',
        clevel: 5,
        shuffle: itemsize > 1 ? 1 : 0,
        blocksize: 0,
      };
    case 'zlib':
      return { id: 'zlib', level: 1 };
    case 'none':
      return null;
  }
}

export const ZARR_DTYPE: Record<PixelType, string> = {
  int8: '|i1',
  uint8: '|u1',
  int16: '<i2',
  uint16: '<u2',
  int32: '<i4',
  uint32: '<u4',
  float32: '<f4',
  float64: '<f8',
};

export interface ChunkCodec {
  encode(raw: Uint8Array): Promise<Uint8Array>;
  decode(data: Uint8Array): Promise<Uint8Array>;
}

export function chunkCodec(compressor: ZarrCompressor): ChunkCodec {
  if (compressor === null) return { encode: async (b) => b, decode: async (b) => b };
  if (compressor.id === 'zlib') {
    const level = compressor.level;
    return { encode: async (b) => deflateSync(b, { level }), decode: async (b) => inflateSync(b) };
  }
  const blosc = Blosc.fromConfig(compressor);
  return { encode: (b) => blosc.encode(b), decode: (b) => blosc.decode(b) };
}

/**
 * Writes a chunk file in place. No temporary name and rename: a torn chunk can only belong to a block
 * the progress record does not list yet, and such blocks are written again on resume; recorded blocks
 * are verified by decoding. Synchronous on purpose: a chunk is small and lands in the page cache at
 * once, while thread-pool round trips of async calls cost more than the writes on a busy machine.
 */
export function writeChunkFile(path: string, data: Uint8Array): void {
  try {
    writeFileSync(path, data);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, data);
  }
}
