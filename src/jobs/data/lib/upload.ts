/**
 * file_upload: real rclone uploads files or a directory from the data dirs to a remote, then verifies
 * the remote copy with `rclone check`: by hash where the remote has one in common with local files, by
 * downloading and comparing the bytes where it has none. Resumable: a re-run skips what is already
 * there with the same size and modification time, and uploads the rest.
 */
import { stat } from 'node:fs/promises';
import { dirname, relative } from 'node:path';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import type { CoreContext } from '../../lib/context.js';
import { DataInputError, DataJobError, ToolFailedError } from '../../lib/errors.js';
import { confine } from '../../lib/paths.js';
import type { DataEnv } from './env.js';
import { listRemotes, resolveRcloneConfig, type RcloneConfig } from './rcloneConfig.js';
import {
  parseRemote,
  rcloneOptionArgs,
  rcloneOptions,
  runRclone,
  type RcloneRunResult,
} from './rcloneRun.js';
import { listTree } from './tarPack.js';

export const uploadInput = lazySchema((z) =>
  z.object({
    files: z
      .union([z.string(), z.array(z.string()).min(1)])
      .describe('files or directories in the data dirs (a directory is uploaded with its contents)'),
    destination: z.string().describe('remote:path of the rclone config'),
    config: z.string().optional().describe('an rclone config file in the data dirs'),
    user_email: z.string().optional().describe("legacy: use this user's credentials in the auth data dir"),
    verify: z
      .enum(['auto', 'hash', 'download', 'none'])
      .default('auto')
      .describe('auto: by hash when the remote has one, else by download'),
    options: rcloneOptions().optional(),
  }),
);
export type UploadInput = z.input<ReturnType<typeof uploadInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type UploadOptions = z.output<ReturnType<typeof uploadInput>>;

export interface UploadResult {
  destination: string;
  files: number;
  bytes: number;
  transferred_files: number;
  transferred_bytes: number;
  verified: boolean;
  verify_method: 'hash' | 'download' | 'none';
  config_from: RcloneConfig['from'];
  duration_ms: number;
}

/** The upload's base folder and, unless it is one whole directory, the files under it. */
interface Plan {
  base: string;
  list: string[] | null;
  files: number;
  bytes: number;
}

async function plan(paths: string[], ctx: CoreContext, env: DataEnv): Promise<Plan> {
  const resolved = [];
  for (const [i, p] of paths.entries()) {
    const field = paths.length === 1 ? 'files' : `files[${i}]`;
    const c = await confine(p, env.dataDirs, { field, mustExist: true });
    resolved.push({ real: c.real, dir: (await stat(c.real)).isDirectory() });
  }
  const count = async (dir: string): Promise<{ rels: string[]; bytes: number }> => {
    const files = (await listTree(dir, ctx)).filter((e) => e.type === 'file');
    return { rels: files.map((f) => f.rel), bytes: files.reduce((n, f) => n + f.size, 0) };
  };
  if (resolved.length === 1 && resolved[0]!.dir) {
    const { rels, bytes } = await count(resolved[0]!.real);
    return { base: resolved[0]!.real, list: null, files: rels.length, bytes };
  }
  const base = commonDir(resolved.map((r) => dirname(r.real)));
  const list = new Set<string>();
  let bytes = 0;
  for (const r of resolved) {
    if (r.dir) {
      const sub = await count(r.real);
      for (const rel of sub.rels) list.add(relative(base, `${r.real}/${rel}`));
      bytes += sub.bytes;
    } else if (!list.has(relative(base, r.real))) {
      list.add(relative(base, r.real));
      bytes += (await stat(r.real)).size;
    }
  }
  return { base, list: [...list].sort(), files: list.size, bytes };
}

function commonDir(dirs: string[]): string {
  let parts = dirs[0]!.split('/');
  for (const d of dirs.slice(1)) {
    const q = d.split('/');
    let i = 0;
    while (i < parts.length && i < q.length && parts[i] === q[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join('/') || '/';
}

/** Verification found the remote copy different: retried, and the retry uploads what differs. */
export class UploadNotVerifiedError extends DataJobError {
  constructor(message: string, details: unknown) {
    super('UploadNotVerifiedError', message, { retryable: true, code: 'JOBD_UPLOAD_NOT_VERIFIED', details });
  }
}

/** Validates its input itself (a call outside a job); a job type calls fileUploadParsed. */
export async function fileUpload(input: UploadInput, ctx: CoreContext, env: DataEnv): Promise<UploadResult> {
  return fileUploadParsed(uploadInput().parse(input), ctx, env);
}

/** fileUpload for an input its job type's schema parsed (the daemon or the handler did). */
export async function fileUploadParsed(
  opts: UploadOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<UploadResult> {
  const dest = parseRemote(opts.destination, 'destination');
  if (!dest) {
    throw new DataInputError(
      `destination: "${opts.destination}" is not a remote path; expected remote:path (a remote of the rclone config)`,
    );
  }
  const paths = typeof opts.files === 'string' ? [opts.files] : opts.files;
  const p = await plan(paths, ctx, env);
  const config = await resolveRcloneConfig(opts, env);
  const remotes = await listRemotes(config, ctx, env);
  if (!remotes.has(dest.remote)) {
    throw new DataInputError(
      `destination: the remote "${dest.remote}" is not defined in the rclone config (from ${config.from}); defined: ${[...remotes.keys()].join(', ') || 'none'}`,
    );
  }
  const started = Date.now();
  const listArgs = p.list ? ['--files-from-raw=-'] : [];
  const stdin = p.list ? { stdinLines: p.list } : {};
  ctx.progress(0, `file_upload: ${p.files} files, ${p.bytes} bytes`);
  const copy = await runRclone(
    {
      args: ['copy', ...listArgs, ...rcloneOptionArgs(opts.options), '--', p.base, opts.destination],
      config,
      env,
      label: 'file_upload',
      span: [0, opts.verify === 'none' ? 99 : 80],
      ...stdin,
    },
    ctx,
  );

  let method: UploadResult['verify_method'] = 'none';
  if (opts.verify !== 'none' && !opts.options?.dry_run) {
    const check = async (download: boolean): Promise<RcloneRunResult> => {
      try {
        return await runRclone(
          {
            args: [
              'check',
              '--one-way',
              '--combined=-',
              ...(download ? ['--download'] : []),
              ...listArgs,
              '--',
              p.base,
              opts.destination,
            ],
            config,
            env,
            label: 'file_upload verify',
            span: [80, 99],
            ...stdin,
          },
          ctx,
        );
      } catch (err) {
        const differences = copyDifferences(err);
        if (differences === null) throw err;
        throw new UploadNotVerifiedError(
          `file_upload: the remote copy at "${opts.destination}" differs from the source in ${differences.count} file(s): ${differences.list
            .slice(0, 5)
            .map((d) => `${d.path}: ${d.problem}`)
            .join('; ')}`,
          { differences: differences.list },
        );
      }
    };
    method = opts.verify === 'download' ? 'download' : 'hash';
    const res = await check(method === 'download');
    const unchecked = res.notices.some((n) => /^[1-9]\d* hashes could not be checked/.test(n));
    if (method === 'hash' && unchecked) {
      if (opts.verify === 'hash') {
        throw new DataInputError(
          `verify: the remote "${dest.remote}" has no hash in common with local files; use verify "download" or "auto"`,
        );
      }
      method = 'download';
      await check(true);
    }
  }
  const s = copy.stats;
  const result: UploadResult = {
    destination: opts.destination,
    files: p.files,
    bytes: p.bytes,
    transferred_files: s?.transfers ?? 0,
    transferred_bytes: s?.bytes ?? 0,
    verified: method !== 'none',
    verify_method: method,
    config_from: config.from,
    duration_ms: Date.now() - started,
  };
  ctx.progress(100, `file_upload: ${result.transferred_files} files sent, verified: ${result.verified}`);
  return result;
}

const COMBINED: Record<string, string> = {
  '*': 'differs from the source',
  '-': 'missing on the remote',
  '!': 'could not be checked',
};

/**
 * The differences `rclone check` reported with its failure (from `--combined`, which names each file
 * whatever the check method), or null for any other failure.
 */
function copyDifferences(
  err: unknown,
): { count: number; list: Array<{ path: string; problem: string }> } | null {
  if (!(err instanceof ToolFailedError) || err.exitCode !== 1) return null;
  const details = err.details as Pick<RcloneRunResult, 'notices' | 'stdout'> | undefined;
  const found = details?.notices.map((n) => /^(\d+) differences found/.exec(n)).find((m) => m);
  if (!found || Number(found[1]) === 0) return null;
  const list = details!.stdout
    .map((l) => ({ mark: l[0]!, path: l.slice(2) }))
    .filter((l) => COMBINED[l.mark])
    .map((l) => ({ path: l.path, problem: COMBINED[l.mark]! }));
  return { count: Number(found[1]), list };
}
