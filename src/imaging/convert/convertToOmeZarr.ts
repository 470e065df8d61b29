/**
 * Stack (TIFF, MRC, 3D/4D HDF5) → OME-Zarr 0.4 pyramid, streaming plane by plane.
 *
 * Levels halve x and y by 2×2 means until the smallest side is under `minSide`; the first axis
 * (z, or the scan position of 4D data) is never downsampled, so every level has every plane and a
 * level's plane is computed from the level above it while that plane is in memory.
 *
 * Memory: one block of cz planes per level, at most 4/3 · cz · H · W · b bytes (b bytes per pixel),
 * plus the plane being read and its downsampled copies (4/3 · H · W · b) and one chunk being encoded
 * (2 · cz · cy · cx · b): about (4/3 · (cz + 1)) · H · W · b + 2 · cz · cy · cx · b, whatever the depth.
 *
 * Resumable: after all chunks of a block are written at every level, the block is appended to the
 * progress record. A re-run with the same input
 * and options verifies the recorded blocks' chunks (present, decodable, the right size) and skips them.
 */
import { mkdirSync } from 'node:fs';
import { mkdir, readdir, readFile, realpath, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { KernelAbortedError } from '../errors.js';
import { openStack, type StackFormat } from '../formats/openStack.js';
import {
  chunkKey,
  writeOmeZarrMetadata,
  type OmeZarrImageSpec,
  type OmeZarrLevel,
} from '../formats/omeZarr.js';
import {
  chunkCodec,
  compressorFor,
  COMPRESSIONS,
  writeChunkFile,
  type ChunkCodec,
  type Compression,
} from '../formats/zarrChunks.js';
import { downsample2x, pyramidShapes } from '../kernels/downsample.js';
import { throwIfAborted, type KernelControl } from '../progress.js';
import { allocPlane, BYTES_PER_PIXEL, type ImageStack, type PlaneArray } from '../types.js';
import { readProgress, recordBlock, recordComplete, startProgress } from './progressLog.js';

export interface ConvertOptions {
  /** Chunk shape [z, y, x]; default [1, 256, 256]. */
  chunks?: [number, number, number];
  compression?: Compression;
  /** Pyramid stops at the first level whose smallest side is under this; default 256. */
  minSide?: number;
  format?: StackFormat;
  /** HDF5: the dataset to convert (default: the largest 3D or 4D one). */
  dataset?: string;
  /** Replace an output that holds something else (a different input or options). */
  overwrite?: boolean;
}

export interface ConvertResult {
  output: string;
  levels: OmeZarrLevel[];
  planes: number;
  blocks: number;
  blocksSkipped: number;
  chunksWritten: number;
  bytesRead: number;
  bytesWritten: number;
}

function validate(
  opts: ConvertOptions,
): Required<Pick<ConvertOptions, 'chunks' | 'compression' | 'minSide'>> {
  const chunks = opts.chunks ?? [1, 256, 256];
  if (chunks.length !== 3 || !chunks.every((c) => Number.isInteger(c) && c > 0 && c <= 65536)) {
    throw new RangeError(
      `chunks = ${JSON.stringify(opts.chunks)} is not allowed: must be [z, y, x], positive integers up to 65536`,
    );
  }
  const compression = opts.compression ?? 'blosc-lz4';
  if (!COMPRESSIONS.includes(compression)) {
    throw new RangeError(
      `compression = ${JSON.stringify(compression)} is not allowed: must be one of ${COMPRESSIONS.join(', ')}`,
    );
  }
  const minSide = opts.minSide ?? 256;
  if (!Number.isInteger(minSide) || minSide < 2)
    throw new RangeError(`minSide = ${minSide} is not allowed: must be an integer ≥ 2`);
  return { chunks, compression, minSide };
}

async function isEmptyOrMissing(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

interface Level {
  path: string;
  width: number;
  height: number;
  /** cz planes of this level, filled plane by plane, then cut into chunks. */
  block: PlaneArray;
  /** The current plane at this level (levels > 0), reused from plane to plane. */
  plane: PlaneArray;
}

export async function convertToOmeZarr(
  input: string,
  output: string,
  opts: ConvertOptions = {},
  ctl: KernelControl = {},
): Promise<ConvertResult> {
  const { chunks, compression, minSide } = validate(opts);
  const cz = chunks[0];
  const { signal, onProgress } = ctl;
  const src = await openStack(input, {
    ...(opts.format ? { format: opts.format } : {}),
    ...(opts.dataset ? { dataset: opts.dataset } : {}),
  });
  try {
    const bpp = BYTES_PER_PIXEL[src.dtype];
    const inputStat = await stat(input);
    const fingerprint = JSON.stringify({
      input: await realpath(input),
      size: inputStat.size,
      mtimeMs: inputStat.mtimeMs,
      dataset: opts.dataset ?? null,
      chunks,
      compression,
      minSide,
    });
    const shapes = pyramidShapes(src.width, src.height, minSide);
    const levels: OmeZarrLevel[] = shapes.map((s, i) => ({
      path: String(i),
      shape: [src.depth, s.height, s.width],
    }));
    const compressor = compressorFor(compression, bpp);
    const spec: OmeZarrImageSpec = {
      name: basename(input),
      dtype: src.dtype,
      chunks,
      compressor,
      levels,
      pixelSize: src.pixelSize,
      firstAxis: src.scanShape ? { name: 'scan', type: 'scan' } : { name: 'z', type: 'space' },
      extra: {
        source: basename(input),
        ...(src.scanShape
          ? { scanShape: src.scanShape, note: 'axis "scan" is scan_y * scanShape[1] + scan_x' }
          : {}),
      },
    };

    const previous = await readProgress(output);
    let done = new Set<number>();
    if (previous && previous.fingerprint === fingerprint) {
      done = previous.blocks;
    } else if (previous || !(await isEmptyOrMissing(output))) {
      if (!opts.overwrite) {
        throw new RangeError(
          `output ${output} already holds ${previous ? 'a conversion of another input or with other options' : 'other files'}; pass overwrite: true to replace it`,
        );
      }
      await rm(output, { recursive: true, force: true });
    }
    await mkdir(output, { recursive: true });
    await writeOmeZarrMetadata(output, spec);
    if (!previous || previous.fingerprint !== fingerprint) await startProgress(output, fingerprint);

    const codec = chunkCodec(compressor);
    const nBlocks = Math.ceil(src.depth / cz);
    const result: ConvertResult = {
      output,
      levels,
      planes: src.depth,
      blocks: nBlocks,
      blocksSkipped: 0,
      chunksWritten: 0,
      bytesRead: 0,
      bytesWritten: 0,
    };
    const verified = new Set<number>();
    for (const b of [...done].sort((a, c) => a - c)) {
      throwIfAborted(signal, 'conversion');
      if (b < nBlocks && (await blockIsIntact(output, levels, chunks, b, bpp, codec))) verified.add(b);
    }
    result.blocksSkipped = verified.size;
    if (verified.size)
      onProgress?.(0, `skipping ${verified.size} of ${nBlocks} blocks already written and verified`);

    const lv: Level[] = shapes.map((s, i) => ({
      path: String(i),
      width: s.width,
      height: s.height,
      block: allocPlane(src.dtype, cz * s.width * s.height),
      plane: allocPlane(src.dtype, i === 0 ? 0 : s.width * s.height),
    }));
    const chunk = allocPlane(src.dtype, chunks[0] * chunks[1] * chunks[2]);
    let planesDone = verified.size
      ? [...verified].reduce((n, b) => n + Math.min(cz, src.depth - b * cz), 0)
      : 0;
    for (let b = 0; b < nBlocks; b++) {
      if (verified.has(b)) continue;
      const z0 = b * cz;
      const nz = Math.min(cz, src.depth - z0);
      for (let j = 0; j < nz; j++) {
        throwIfAborted(signal, 'conversion');
        const plane = await readPlaneOf(src, z0 + j);
        result.bytesRead += plane.length * bpp;
        let cur: ArrayLike<number> = plane;
        for (let l = 0; l < lv.length; l++) {
          const L = lv[l]!;
          if (l > 0) {
            const prev = lv[l - 1]!;
            cur = downsample2x(cur, prev.width, prev.height, src.dtype, L.plane).data;
          }
          L.block.set(cur as PlaneArray as never, j * L.width * L.height);
        }
        planesDone++;
        onProgress?.(planesDone / src.depth, `plane ${z0 + j + 1}/${src.depth}`);
      }
      for (const L of lv) {
        const written = await writeBlockChunks(output, L, b, nz, chunks, chunk, codec, signal);
        result.chunksWritten += written.chunks;
        result.bytesWritten += written.bytes;
      }
      await recordBlock(output, b);
    }
    await recordComplete(output);
    onProgress?.(1, `wrote ${result.chunksWritten} chunks in ${levels.length} levels`);
    return result;
  } finally {
    await src.close();
  }
}

async function readPlaneOf(src: ImageStack, z: number): Promise<PlaneArray> {
  const p = await src.readPlane(z);
  if (p.length !== src.width * src.height)
    throw new Error(`${src.path}: plane ${z} has ${p.length} pixels, expected ${src.width}×${src.height}`);
  return p;
}

async function writeBlockChunks(
  root: string,
  L: Level,
  b: number,
  nz: number,
  [cz, cy, cx]: [number, number, number],
  chunk: PlaneArray,
  codec: ChunkCodec,
  signal: AbortSignal | undefined,
): Promise<{ chunks: number; bytes: number }> {
  const ny = Math.ceil(L.height / cy);
  const nx = Math.ceil(L.width / cx);
  let bytes = 0;
  let chunks = 0;
  for (let iy = 0; iy < ny; iy++) {
    mkdirSync(join(root, L.path, String(b), String(iy)), { recursive: true });
    for (let ix = 0; ix < nx; ix++) {
      if (signal?.aborted) throw new KernelAbortedError('conversion', { cause: signal.reason });
      // Zarr v2 edge chunks are stored full-size, padded with the fill value (0). The buffer is
      // reused: the codec copies it before the next chunk is cut.
      const y0 = iy * cy;
      const x0 = ix * cx;
      const h = Math.min(cy, L.height - y0);
      const w = Math.min(cx, L.width - x0);
      if (h < cy || w < cx || nz < cz) chunk.fill(0);
      for (let j = 0; j < nz; j++) {
        for (let y = 0; y < h; y++) {
          const s = j * L.width * L.height + (y0 + y) * L.width + x0;
          chunk.set(L.block.subarray(s, s + w) as never, (j * cy + y) * cx);
        }
      }
      const encoded = await codec.encode(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      bytes += encoded.length;
      chunks++;
      writeChunkFile(join(root, chunkKey(L.path, b, iy, ix)), encoded);
    }
  }
  return { chunks, bytes };
}

async function blockIsIntact(
  root: string,
  levels: OmeZarrLevel[],
  [cz, cy, cx]: [number, number, number],
  b: number,
  bpp: number,
  codec: ChunkCodec,
): Promise<boolean> {
  const expected = cz * cy * cx * bpp;
  for (const l of levels) {
    const ny = Math.ceil(l.shape[1] / cy);
    const nx = Math.ceil(l.shape[2] / cx);
    for (let iy = 0; iy < ny; iy++) {
      for (let ix = 0; ix < nx; ix++) {
        try {
          const raw = await codec.decode(
            new Uint8Array(await readFile(join(root, chunkKey(l.path, b, iy, ix)))),
          );
          if (raw.length !== expected) return false;
        } catch {
          return false;
        }
      }
    }
  }
  return true;
}
