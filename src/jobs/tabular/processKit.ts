/**
 * What the record-processing job types (data_transform, data_aggregation, record_validation) share:
 * record-file path fields, field names, the error policy, and running a core with the job's context on
 * the paths as they resolve now (each output checked right before it is written).
 */
import type { z } from 'zod';
import type { TypedJobContext } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { lazySchema } from '../lazyZod.js';
import { cleanStaleTemps } from '../lib/atomic.js';
import type { CoreContext } from '../lib/context.js';

export function recordsIn(description: string): z.ZodType<string, string> {
  return dataPath({ mode: 'read', kind: 'file', mustExist: true, description });
}

export function recordsOut(description: string): z.ZodType<string, string> {
  return dataPath({ mode: 'write', description });
}

/** A record's field name (top level). */
export const fieldName = lazySchema((z) =>
  z
    .string()
    .min(1, { error: 'must be a field name (not empty)' })
    .refine((s) => !s.startsWith('$'), { error: 'must not start with $ (MongoDB reserves such names)' }),
);

export const errorPolicy = lazySchema((z) =>
  z
    .enum(['fail', 'null', 'skip', 'quarantine'], { error: 'must be one of fail, null, skip, quarantine' })
    .describe('fail the job, set the field to null, skip the row, or write the row to the quarantine file'),
);

export function coreContext(ctx: TypedJobContext): CoreContext {
  return {
    signal: ctx.signal,
    progress: (percent, message) => ctx.progress(percent, message),
    log: (msg, extra) => ctx.logger.info(msg, extra),
  };
}

/** Checks each output path now (inside the declared write paths) and clears temporaries dead runs left. */
export async function prepareOutputs(ctx: TypedJobContext, paths: readonly string[]): Promise<string[]> {
  const real: string[] = [];
  for (const p of paths) {
    const r = await ctx.checkWrite(p);
    await cleanStaleTemps(r);
    real.push(r);
  }
  return real;
}

/** Peak resident memory of this process so far (in an isolated child, the job's own). */
export function peakRssBytes(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** Refuses two path fields naming the same file (reading and writing one file would lose it). */
export function distinctPaths(fields: Record<string, string | undefined>, ctx: z.RefinementCtx): void {
  const seen = new Map<string, string>();
  for (const [name, path] of Object.entries(fields)) {
    if (path === undefined) continue;
    const first = seen.get(path);
    if (first) {
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: `is the same file as ${first}: give another path`,
      });
    } else {
      seen.set(path, name);
    }
  }
}
