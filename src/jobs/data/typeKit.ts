/**
 * What the dataset job types share: running a core with the job's context and the data settings, the
 * legacy bookkeeping fields the legacy service put on its jobs, and path fields.
 */
import type { z } from 'zod';
import type { TypedJobContext } from '../defineJobType.js';
import { dataPath, type DataPathOptions } from '../dataPath.js';
import { lazySchema, zodNow } from '../lazyZod.js';
import type { CoreContext } from '../lib/context.js';
import { dataEnvFor } from './dataEnv.js';
import type { DataEnv } from './lib/env.js';

/** Runs a core with the job's signal, progress and log, and the DataEnv the daemon handed the child. */
export function runCore<I, R>(
  core: (input: I, ctx: CoreContext, env: DataEnv) => Promise<R>,
  input: I,
  ctx: TypedJobContext,
): Promise<R> {
  const coreCtx: CoreContext = {
    signal: ctx.signal,
    progress: (percent, message) => ctx.progress(percent, message),
    log: (msg, extra) => ctx.logger.info(msg, extra),
  };
  return core(input, coreCtx, dataEnvFor(ctx.dataDirs));
}

/**
 * Fields the legacy service (and `jobctl migrate`) put on every job: accepted so migrated jobs
 * validate, and not used by the job itself.
 */
export const legacyJobFields = lazySchema((z) => ({
  dataset_uuid: z.string().optional().describe('legacy: the dataset the job belongs to'),
  monitor_existing: z.boolean().optional().describe('legacy: ignored (jobd re-runs the step)'),
}));

/**
 * Whose rclone access a transfer uses: a config file in the data dirs, or (legacy) a user's credentials
 * in the auth data dir. file_upload, remote_sync and google_sync take the same two fields.
 */
export const rcloneAccessFields = lazySchema((z) => ({
  config: dataPath({
    mode: 'read',
    kind: 'file',
    description: 'an rclone config file in the data dirs',
  }).optional(),
  user_email: z.string().optional().describe("legacy: use this user's credentials in the auth data dir"),
}));

/**
 * A path in the data dirs, or a remote the tool reaches itself. `localPart` returns the local path a
 * value names (confined like a dataPath field, at enqueue and again when the job runs), or null for a
 * remote, which the tool checks when the job runs.
 */
export function pathOrRemote(
  localPart: (value: string) => string | null,
  opts: DataPathOptions & { remotes: string },
): z.ZodType<string, string> {
  const local = dataPath(opts);
  const allowed = `must be ${opts.remotes}, or an absolute path inside a data dir`;
  return zodNow()
    .string({ error: allowed })
    .min(1, { error: allowed })
    .superRefine(async (value, ctx) => {
      const path = localPart(value);
      if (path === null) return;
      const r = await local.safeParseAsync(path);
      if (!r.success)
        for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', message: issue.message });
    })
    .describe(opts.description ?? `${opts.remotes}, or an absolute path inside a data dir`);
}
