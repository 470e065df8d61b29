/**
 * dataset_conversion, ome-zarr mode: a TIFF or MRC stack, or a 3D/4D HDF5 dataset, becomes an
 * OME-NGFF 0.4 pyramid on Zarr v2, through jobd's streaming converter (src/imaging/convert).
 *
 * The pyramid is built in a temporary sibling whose name is fixed per output
 * (`.<name>.jobd-omezarr-partial`), not random like command mode's: the converter records each block
 * it finished there, so the next attempt after a crash, a timeout or a shutdown finds the same folder,
 * verifies the recorded chunks and skips them. The folder is renamed into place on success and removed
 * when the failure is final (a corrupt input, a bad option); after an abort it stays for the retry.
 */
import { open, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { convertToOmeZarr, type ConvertOptions } from '../../../imaging/convert/convertToOmeZarr.js';
import { KernelAbortedError } from '../../../imaging/errors.js';
import { stackFormatOf, type StackFormat } from '../../../imaging/formats/openStack.js';
import type { Compression } from '../../../imaging/formats/zarrChunks.js';
import { renameIntoPlace } from '../../lib/atomic.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError, throwIfAborted } from '../../lib/errors.js';
import { confine, recheck } from '../../lib/paths.js';
import type { DataEnv } from './env.js';
import { listTree } from './tarPack.js';

const PARTIAL = '.jobd-omezarr-partial';

/** The fixed temporary of an output: a retry of the same conversion resumes in it. */
export function partialSibling(target: string): string {
  return join(dirname(target), `.${basename(target)}${PARTIAL}`);
}

export interface OmeZarrParams {
  input_path: string;
  output_path: string;
  sensor_type?: string | undefined;
  chunks?: [number, number, number] | undefined;
  compression?: Compression | undefined;
}

export interface OmeZarrResult {
  mode: 'ome-zarr';
  output_path: string;
  sensor_type?: string;
  format: StackFormat;
  levels: number[][];
  planes: number;
  blocks_skipped: number;
  output_files: number;
  output_bytes: number;
  duration_ms: number;
}

/** The format by extension, else by the file's first bytes (TIFF, BigTIFF, HDF5, MRC's "MAP "). */
async function detectFormat(path: string, field: string, shown: string): Promise<StackFormat> {
  const byName = stackFormatOf(path);
  if (byName) return byName;
  const head = Buffer.alloc(212);
  const fh = await open(path, 'r');
  try {
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  const tiff = head.readUInt16BE(0);
  const magic = tiff === 0x4949 ? head.readUInt16LE(2) : head.readUInt16BE(2);
  if ((tiff === 0x4949 || tiff === 0x4d4d) && (magic === 42 || magic === 43)) return 'tiff';
  if (head.subarray(0, 8).equals(Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a])))
    return 'hdf5';
  if (head.toString('latin1', 208, 212) === 'MAP ') return 'mrc';
  throw new DataInputError(
    `${field}: "${shown}" is not a TIFF, MRC or HDF5 file (by its extension or its first bytes); the ome-zarr mode converts those`,
  );
}

export async function convertOmeZarrDataset(
  opts: OmeZarrParams,
  ctx: CoreContext,
  env: DataEnv,
): Promise<OmeZarrResult> {
  const src = await confine(opts.input_path, env.dataDirs, { field: 'input_path', mustExist: true });
  const out = await confine(opts.output_path, env.dataDirs, { field: 'output_path', forWrite: true });
  if (out.real === src.real || out.real.startsWith(`${src.real}/`) || src.real.startsWith(`${out.real}/`)) {
    throw new DataInputError(
      `output_path: "${opts.output_path}" overlaps input_path "${opts.input_path}"; the output replaces what is there`,
    );
  }
  if (!(await stat(src.real)).isFile()) {
    throw new DataInputError(
      `input_path: "${opts.input_path}" is a folder; the ome-zarr mode converts one TIFF, MRC or HDF5 file`,
    );
  }
  const format = await detectFormat(src.real, 'input_path', opts.input_path);
  const tmp = partialSibling(out.real);
  const options: ConvertOptions = {
    format,
    // The temporary is this output's own: a conversion of another input or with other options
    // replaces whatever an earlier attempt left there.
    overwrite: true,
    ...(opts.chunks ? { chunks: opts.chunks } : {}),
    ...(opts.compression ? { compression: opts.compression } : {}),
  };
  const started = Date.now();
  try {
    await recheck(out, env.dataDirs);
    ctx.progress(0, `converting ${format} to OME-Zarr`);
    const r = await convertToOmeZarr(src.real, tmp, options, {
      signal: ctx.signal,
      onProgress: (fraction, message) => ctx.progress(Math.min(99, fraction * 100), message),
    });
    if (r.blocksSkipped)
      ctx.log('resumed: blocks already written and verified were skipped', { blocks: r.blocksSkipped });
    throwIfAborted(ctx.signal, 'dataset_conversion');
    const files = (await listTree(tmp, ctx)).filter((f) => f.type === 'file');
    const bytes = files.reduce((a, f) => a + f.size, 0);
    await recheck(out, env.dataDirs);
    await renameIntoPlace(tmp, out.real);
    ctx.progress(100, `converted: ${r.planes} planes, ${r.levels.length} levels, ${files.length} files`);
    return {
      mode: 'ome-zarr',
      output_path: opts.output_path,
      ...(opts.sensor_type ? { sensor_type: opts.sensor_type } : {}),
      format,
      levels: r.levels.map((l) => [...l.shape]),
      planes: r.planes,
      blocks_skipped: r.blocksSkipped,
      output_files: files.length,
      output_bytes: bytes,
      duration_ms: Date.now() - started,
    };
  } catch (err) {
    if (ctx.signal.aborted || err instanceof KernelAbortedError) {
      // Kept: the retry of a timed-out or interrupted job resumes from the verified chunks.
      throw asAbort(err, ctx.signal, 'dataset_conversion');
    }
    await rm(tmp, { recursive: true, force: true });
    if (err instanceof RangeError) throw new DataInputError(`dataset_conversion: ${err.message}`);
    throw err;
  }
}
