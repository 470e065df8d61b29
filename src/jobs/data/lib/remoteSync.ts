/**
 * remote_sync and google_sync: real rclone copies (or syncs) a remote folder into a data dir. The
 * source is a remote of the rclone config (`remote:path`), or one of the legacy `data_url` forms:
 * `rclone:remote:path`, a Google Drive folder link (the config's drive remote, rooted at that folder),
 * or `file:///path` inside the data dirs. rclone is its own resume: a re-run after a crash compares
 * sizes and modification times and copies only what is missing or different.
 */
import { mkdir } from 'node:fs/promises';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import type { CoreContext } from '../../lib/context.js';
import { DataInputError } from '../../lib/errors.js';
import { confine, recheck } from '../../lib/paths.js';
import type { DataEnv } from './env.js';
import { listRemotes, resolveRcloneConfig, type RcloneConfig } from './rcloneConfig.js';
import { parseRemote, rcloneOptionArgs, rcloneOptions, runRclone } from './rcloneRun.js';

export const remoteSyncInput = lazySchema((z) =>
  z
    .object({
      source: z
        .string()
        .optional()
        .describe(
          'remote:path of the rclone config, rclone:remote:path, a Google Drive folder link or file:///path',
        ),
      data_url: z.string().optional().describe('legacy name of source'),
      destination: z.string().optional().describe('the data dir folder to copy into'),
      input_dir: z.string().optional().describe('legacy name of destination'),
      mode: z
        .enum(['copy', 'sync'])
        .default('copy')
        .describe('sync also deletes what the source no longer has'),
      config: z.string().optional().describe('an rclone config file in the data dirs'),
      user_email: z.string().optional().describe("legacy: use this user's credentials in the auth data dir"),
      remote: z
        .string()
        .optional()
        .describe('for Google Drive links: the drive remote of the config (default: its only drive remote)'),
      options: rcloneOptions().optional(),
    })
    .refine((v) => v.source !== undefined || v.data_url !== undefined, {
      message: 'source (or the legacy data_url) is required',
      path: ['source'],
    })
    .refine((v) => v.destination !== undefined || v.input_dir !== undefined, {
      message: 'destination (or the legacy input_dir) is required',
      path: ['destination'],
    }),
);
export type RemoteSyncInput = z.input<ReturnType<typeof remoteSyncInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type RemoteSyncOptions = z.output<ReturnType<typeof remoteSyncInput>>;

export interface RemoteSyncResult {
  source: string;
  destination: string;
  mode: 'copy' | 'sync';
  config_from: RcloneConfig['from'];
  files_transferred: number;
  bytes_transferred: number;
  checks: number;
  deletes: number;
  speed_bytes_per_sec: number;
  dry_run: boolean;
  duration_ms: number;
}

const DRIVE_FOLDER =
  /^https:\/\/drive\.google\.com\/(?:drive\/(?:u\/\d+\/)?folders\/([A-Za-z0-9_-]+)|open\?id=([A-Za-z0-9_-]+))/;

/** How a legacy or plain source reads for rclone. */
export type SourceSpec =
  | { kind: 'remote'; remote: string; path: string }
  | { kind: 'drive'; folderId: string }
  | { kind: 'local'; path: string };

export function parseSource(value: string, field: string): SourceSpec {
  const drive = DRIVE_FOLDER.exec(value);
  if (drive) return { kind: 'drive', folderId: (drive[1] ?? drive[2])! };
  if (/^https?:\/\/drive\.google\.com\//.test(value)) {
    throw new DataInputError(
      `${field}: "${value}" is a Google Drive link but not to a folder; share the folder (https://drive.google.com/drive/folders/<id>)`,
    );
  }
  if (value.startsWith('file://')) {
    const path = decodeURIComponent(value.slice('file://'.length));
    return { kind: 'local', path };
  }
  const r = parseRemote(value.startsWith('rclone:') ? value.slice('rclone:'.length) : value, field);
  if (r) return { kind: 'remote', ...r };
  throw new DataInputError(
    `${field}: "${value}" is not a source remote_sync reads; expected remote:path (a remote of the rclone config), rclone:remote:path, a Google Drive folder link or file:///path`,
  );
}

/** Validates its input itself (a call outside a job); the job types call the Parsed variants. */
export async function remoteSync(
  input: RemoteSyncInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<RemoteSyncResult> {
  return syncCore(remoteSyncInput().parse(input), ctx, env, 'remote_sync');
}

/** google_sync: remote_sync with the legacy parameters (user_email, input_dir, data_url). */
export async function googleSync(
  input: RemoteSyncInput,
  ctx: CoreContext,
  env: DataEnv,
): Promise<RemoteSyncResult> {
  return syncCore(remoteSyncInput().parse(input), ctx, env, 'google_sync');
}

/** remoteSync for an input its job type's schema parsed (the daemon or the handler did). */
export function remoteSyncParsed(
  opts: RemoteSyncOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<RemoteSyncResult> {
  return syncCore(opts, ctx, env, 'remote_sync');
}

/** googleSync for an input its job type's schema parsed. */
export function googleSyncParsed(
  opts: RemoteSyncOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<RemoteSyncResult> {
  return syncCore(opts, ctx, env, 'google_sync');
}

async function syncCore(
  opts: RemoteSyncOptions,
  ctx: CoreContext,
  env: DataEnv,
  label: string,
): Promise<RemoteSyncResult> {
  const sourceText = (opts.source ?? opts.data_url)!;
  const sourceField = opts.source !== undefined ? 'source' : 'data_url';
  const destText = (opts.destination ?? opts.input_dir)!;
  const destField = opts.destination !== undefined ? 'destination' : 'input_dir';
  const spec = parseSource(sourceText, sourceField);
  const dest = await confine(destText, env.dataDirs, { field: destField, forWrite: true });
  const config = await resolveRcloneConfig(opts, env);

  const args: string[] = [];
  let from: string;
  if (spec.kind === 'local') {
    from = (await confine(spec.path, env.dataDirs, { field: sourceField, mustExist: true, kind: 'dir' }))
      .real;
  } else {
    const remotes = await listRemotes(config, ctx, env);
    let remote: string;
    if (spec.kind === 'drive') {
      const drives = [...remotes].filter(([, type]) => type === 'drive').map(([name]) => name);
      remote = opts.remote ?? (drives.length === 1 ? drives[0]! : '');
      if (!remote) {
        throw new DataInputError(
          `${sourceField}: a Google Drive link needs the config's drive remote; the config (from ${config.from}) has ${drives.length ? `several (${drives.join(', ')}): name one in remote` : 'none'}`,
        );
      }
      args.push(`--drive-root-folder-id=${spec.folderId}`);
      from = `${remote}:`;
    } else {
      remote = spec.remote;
      from = `${spec.remote}:${spec.path}`;
    }
    if (!remotes.has(remote)) {
      throw new DataInputError(
        `${spec.kind === 'drive' ? 'remote' : sourceField}: the remote "${remote}" is not defined in the rclone config (from ${config.from}); defined: ${[...remotes.keys()].join(', ') || 'none'}`,
      );
    }
  }
  await recheck(dest, env.dataDirs);
  await mkdir(dest.real, { recursive: true });
  const started = Date.now();
  ctx.progress(0, `${label}: starting`);
  const res = await runRclone(
    {
      args: [opts.mode, ...args, ...rcloneOptionArgs(opts.options), '--', from, dest.real],
      config,
      env,
      label,
    },
    ctx,
  );
  const s = res.stats;
  const result: RemoteSyncResult = {
    source: sourceText,
    destination: destText,
    mode: opts.mode,
    config_from: config.from,
    files_transferred: s?.transfers ?? 0,
    bytes_transferred: s?.bytes ?? 0,
    checks: s?.checks ?? 0,
    deletes: s?.deletes ?? 0,
    speed_bytes_per_sec: Math.round(s?.speed ?? 0),
    dry_run: !!opts.options?.dry_run,
    duration_ms: Date.now() - started,
  };
  ctx.progress(100, `${label}: ${result.files_transferred} files, ${result.bytes_transferred} bytes`);
  return result;
}
