/**
 * dataset_conversion. Two modes: `ome-zarr` (jobd's own converter, convertOmeZarr.ts) and `command`,
 * which runs the converter configured in the settings the way the legacy
 * service did, `<program> [args...] <input> <output> <sensor> <k=v,...>`, as an argument array. The
 * converter writes into a temporary sibling of the output, renamed into place when it exits 0, so a
 * crash or a cancel never leaves half a conversion where the output belongs. Progress comes from its
 * output lines (a percentage by default).
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import { cleanStaleTemps, renameIntoPlace, tempSibling } from '../../lib/atomic.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError, throwIfAborted } from '../../lib/errors.js';
import { COMPRESSIONS, type Compression } from '../../../imaging/formats/zarrChunks.js';
import { confine, recheck } from '../../lib/paths.js';
import { runTool } from '../../lib/tool.js';
import { converterTool } from '../../lib/toolTable.js';
import { convertOmeZarrDataset, type OmeZarrResult } from './convertOmeZarr.js';
import type { DataEnv } from './env.js';
import { listTree } from './tarPack.js';

const WORD = /^[A-Za-z0-9_.+-]+$/;

const CHUNK_SIDE_RULE = 'a chunk side is an integer from 1 to 65536 (chunks is [z, y, x])';
export const conversionInput = lazySchema((z) => {
  const CHUNK_SIDE = z.number().int(CHUNK_SIDE_RULE).min(1, CHUNK_SIDE_RULE).max(65536, CHUNK_SIDE_RULE);
  return z.object({
    input_path: z.string().describe('the dataset file or folder to convert'),
    output_path: z
      .string()
      .describe('where the converted dataset goes (replaced when the conversion succeeds)'),
    sensor_type: z
      .string()
      .regex(WORD, 'letters, digits and _ . + - (e.g. 4D_Probe, TIFF, HDF5)')
      .optional()
      .describe(
        'what produced the data: passed to the converter (command mode, required), recorded (ome-zarr)',
      ),
    conversion_params: z
      .record(
        z.string().regex(WORD, 'a key of letters, digits and _ . + -'),
        z.union([
          z
            .string()
            .regex(/^[^,=\n\0]*$/, 'a value without commas, "=" or newlines (the converter reads k=v,k=v)'),
          z.number(),
          z.boolean(),
        ]),
      )
      .default({})
      .describe('passed to the converter as k=v,k=v'),
    mode: z
      .enum(['ome-zarr', 'command'])
      .optional()
      .describe(
        "ome-zarr: jobd's converter (TIFF, MRC, HDF5 → OME-Zarr 0.4); command: the converter of the settings. Default: command when data.converter.program is set, else ome-zarr",
      ),
    chunks: z
      .tuple([CHUNK_SIDE, CHUNK_SIDE, CHUNK_SIDE])
      .optional()
      .describe('ome-zarr: the chunk shape [z, y, x], positive integers up to 65536 (default [1, 256, 256])'),
    compression: z
      .enum(COMPRESSIONS as [Compression, ...Compression[]])
      .optional()
      .describe(`ome-zarr: the chunks' compressor, one of ${COMPRESSIONS.join(', ')} (default blosc-lz4)`),
    output_kind: z
      .enum(['dir', 'file'])
      .default('dir')
      .describe('dir: the converter is given an empty folder; file: a path to create'),
  });
});
export type ConversionInput = z.input<ReturnType<typeof conversionInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type ConversionOptions = z.output<ReturnType<typeof conversionInput>>;

export interface CommandResult {
  mode: 'command';
  output_path: string;
  sensor_type: string;
  output_files: number;
  output_bytes: number;
  duration_ms: number;
}

export type ConversionResult = CommandResult | OmeZarrResult;

const DEFAULT_PROGRESS = /(\d+(?:\.\d+)?)\s*%/;

/** The legacy `k=v,k=v` argument, keys sorted so the same parameters give the same command. */
export function paramsArg(params: Record<string, string | number | boolean>): string {
  return Object.keys(params)
    .sort()
    .map((k) => `${k}=${String(params[k])}`)
    .join(',');
}

/** Validates its input itself (a call outside a job); a job type calls convertDatasetParsed. */
export async function convertDataset(
  input: ConversionInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ConversionResult> {
  return convertDatasetParsed(conversionInput().parse(input), ctx, env);
}

/** convertDataset for an input its job type's schema parsed (the daemon or the handler did). */
export async function convertDatasetParsed(
  opts: ConversionOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ConversionResult> {
  const mode = opts.mode ?? (env.converter?.program ? 'command' : 'ome-zarr');
  if (mode === 'ome-zarr') {
    if (Object.keys(opts.conversion_params).length) {
      ctx.log('conversion_params are for the command mode; the ome-zarr mode ignores them', {
        keys: Object.keys(opts.conversion_params),
      });
    }
    return convertOmeZarrDataset(
      {
        input_path: opts.input_path,
        output_path: opts.output_path,
        sensor_type: opts.sensor_type,
        chunks: opts.chunks,
        compression: opts.compression,
      },
      ctx,
      env,
    );
  }
  if (opts.chunks || opts.compression) {
    throw new DataInputError(
      `${opts.chunks ? 'chunks' : 'compression'}: set for mode "command"; chunks and compression are options of mode "ome-zarr" (the command mode's converter takes conversion_params)`,
    );
  }
  const sensor = opts.sensor_type;
  if (!sensor) {
    throw new DataInputError(
      'sensor_type: missing; the command mode passes it to the converter (letters, digits and _ . + -, e.g. 4D_Probe, TIFF, HDF5)',
    );
  }
  const conv = env.converter;
  if (!conv?.program) {
    throw new DataInputError(
      'dataset_conversion: no converter is configured (setting data.converter.program); the command mode runs that program',
    );
  }
  let progressRe = DEFAULT_PROGRESS;
  if (conv.progressRegex) {
    try {
      progressRe = new RegExp(conv.progressRegex);
    } catch (err) {
      throw new DataInputError(`converter.progressRegex: ${(err as Error).message}`);
    }
  }
  const src = await confine(opts.input_path, env.dataDirs, { field: 'input_path', mustExist: true });
  const out = await confine(opts.output_path, env.dataDirs, { field: 'output_path', forWrite: true });
  if (out.real === src.real || out.real.startsWith(`${src.real}/`) || src.real.startsWith(`${out.real}/`)) {
    throw new DataInputError(
      `output_path: "${opts.output_path}" overlaps input_path "${opts.input_path}"; the output replaces what is there`,
    );
  }
  const stale = await cleanStaleTemps(out.real);
  if (stale.length) ctx.log("removed a crashed run's temporary output", { paths: stale });

  const tmp = tempSibling(out.real);
  const started = Date.now();
  try {
    await recheck(out, env.dataDirs);
    if (opts.output_kind === 'dir') await mkdir(tmp);
    else await mkdir(dirname(tmp), { recursive: true });
    ctx.progress(0, `converter starting (${sensor})`);
    await runTool(
      {
        tool: converterTool(conv.program),
        args: [...(conv.args ?? []), src.real, tmp, sensor, paramsArg(opts.conversion_params)],
        progress: (line) => {
          const m = progressRe.exec(line);
          const pct = m ? Number(m[1]) : NaN;
          return Number.isFinite(pct)
            ? { percent: Math.min(99, pct), message: line.slice(0, 200) }
            : undefined;
        },
        onLine: (line, stream) => ctx.log(`converter ${stream}: ${line.slice(0, 500)}`),
        killGraceMs: env.killGraceMs,
      },
      ctx,
    );
    throwIfAborted(ctx.signal, 'dataset_conversion');
    const st = await stat(tmp).catch(() => null);
    const summary = !st
      ? { n: 0, b: 0 }
      : st.isDirectory()
        ? (await listTree(tmp, ctx))
            .filter((f) => f.type === 'file')
            .reduce((a, f) => ({ n: a.n + 1, b: a.b + f.size }), { n: 0, b: 0 })
        : { n: 1, b: st.size };
    if (summary.n === 0) {
      throw new DataInputError(
        'dataset_conversion: the converter exited 0 but wrote nothing at the output path it was given',
      );
    }
    await recheck(out, env.dataDirs);
    await renameIntoPlace(tmp, out.real);
    ctx.progress(100, `converted: ${summary.n} files, ${summary.b} bytes`);
    return {
      mode: 'command',
      output_path: opts.output_path,
      sensor_type: sensor,
      output_files: summary.n,
      output_bytes: summary.b,
      duration_ms: Date.now() - started,
    };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw asAbort(err, ctx.signal, 'dataset_conversion');
  }
}
