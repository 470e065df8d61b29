/**
 * dataset_conversion, command mode: runs the converter configured in the settings the way the legacy
 * service did, `<program> [args...] <input> <output> <sensor> <k=v,...>`, as an argument array. The
 * converter writes into a temporary sibling of the output, renamed into place when it exits 0, so a
 * crash or a cancel never leaves half a conversion where the output belongs. Progress comes from its
 * output lines (a percentage by default).
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';
import { cleanStaleTemps, renameIntoPlace, tempSibling } from '../../lib/atomic.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError, throwIfAborted } from '../../lib/errors.js';
import { confine, recheck } from '../../lib/paths.js';
import { runTool } from '../../lib/tool.js';
import { converterTool } from '../../lib/toolTable.js';
import type { DataEnv } from './env.js';
import { listTree } from './tarPack.js';

const WORD = /^[A-Za-z0-9_.+-]+$/;

export const conversionInput = z.object({
  input_path: z.string().describe('the dataset file or folder to convert'),
  output_path: z
    .string()
    .describe('where the converted dataset goes (replaced when the conversion succeeds)'),
  sensor_type: z
    .string()
    .regex(WORD, 'letters, digits and _ . + - (e.g. 4D_Probe, TIFF, HDF5)')
    .describe('what produced the data, passed to the converter'),
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
  mode: z.enum(['command']).default('command').describe('command: the converter configured in the settings'),
  output_kind: z
    .enum(['dir', 'file'])
    .default('dir')
    .describe('dir: the converter is given an empty folder; file: a path to create'),
});
export type ConversionInput = z.input<typeof conversionInput>;

export interface ConversionResult {
  output_path: string;
  sensor_type: string;
  output_files: number;
  output_bytes: number;
  duration_ms: number;
}

const DEFAULT_PROGRESS = /(\d+(?:\.\d+)?)\s*%/;

/** The legacy `k=v,k=v` argument, keys sorted so the same parameters give the same command. */
export function paramsArg(params: Record<string, string | number | boolean>): string {
  return Object.keys(params)
    .sort()
    .map((k) => `${k}=${String(params[k])}`)
    .join(',');
}

export async function convertDataset(
  input: ConversionInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<ConversionResult> {
  const opts = conversionInput.parse(input);
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
    ctx.progress(0, `converter starting (${opts.sensor_type})`);
    await runTool(
      {
        tool: converterTool(conv.program),
        args: [...(conv.args ?? []), src.real, tmp, opts.sensor_type, paramsArg(opts.conversion_params)],
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
      output_path: opts.output_path,
      sensor_type: opts.sensor_type,
      output_files: summary.n,
      output_bytes: summary.b,
      duration_ms: Date.now() - started,
    };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw asAbort(err, ctx.signal, 'dataset_conversion');
  }
}
