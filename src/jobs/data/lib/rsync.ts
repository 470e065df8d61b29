/**
 * rsync_transfer: real rsync between local paths (inside the data dirs) and to or from rsync daemons
 * (`rsync://host[:port]/module/path`, `host::module/path`). Progress from `--info=progress2`, the result
 * from `--stats`. rsync is its own resume: with `--partial` (on by default) a re-run after a crash sends
 * only what is missing or different.
 */
import { mkdir } from 'node:fs/promises';
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError } from '../../lib/errors.js';
import { confine, recheck, type ConfinedPath } from '../../lib/paths.js';
import { runTool } from '../../lib/tool.js';
import { RSYNC } from '../../lib/toolTable.js';
import type { DataEnv } from './env.js';
import { parseLegacyRsyncOptions, rsyncArgs, rsyncOptions, type RsyncOptions } from './rsyncOptions.js';

export const rsyncInput = lazySchema((z) =>
  z.object({
    source: z
      .string()
      .describe('a local path in the data dirs, or rsync://host[:port]/module/path, or host::module/path'),
    destination: z.string().describe('the same forms as source'),
    options: rsyncOptions().optional(),
    rsync_options: z
      .union([z.string(), z.array(z.string())])
      .optional()
      .describe('legacy flags; accepted only when each is on the allow-list'),
    password_file: z.string().optional().describe('rsync daemon password file (in the data dirs, mode 600)'),
  }),
);
export type RsyncInput = z.input<ReturnType<typeof rsyncInput>>;
/** The input as its schema parsed it (defaults applied): what the job type hands the core. */
export type RsyncTransferOptions = z.output<ReturnType<typeof rsyncInput>>;

export interface RsyncResult {
  files_transferred: number;
  bytes_transferred: number;
  total_files: number;
  total_size: number;
  deleted_files: number;
  bytes_sent: number;
  bytes_received: number;
  speed_bytes_per_sec: number;
  dry_run: boolean;
  duration_ms: number;
}

// An optional `user@` names the daemon's user (its password comes from password_file).
const DAEMON_URL = /^rsync:\/\/([A-Za-z0-9._-]+@)?[A-Za-z0-9.\-[\]:]+\/[A-Za-z0-9._-]+(\/.*)?$/;
const DAEMON_PAIR = /^([A-Za-z0-9._-]+@)?[A-Za-z0-9.\-[\]]+::[A-Za-z0-9._-]+(\/.*)?$/;

/** `rsync://[user@]host[:port]/module/path` or `[user@]host::module/path`. */
export function isRsyncDaemon(value: string): boolean {
  return DAEMON_URL.test(value) || DAEMON_PAIR.test(value);
}

type Endpoint = { kind: 'daemon'; arg: string } | { kind: 'local'; arg: string; confined: ConfinedPath };

async function endpoint(value: string, field: 'source' | 'destination', env: DataEnv): Promise<Endpoint> {
  if (isRsyncDaemon(value)) return { kind: 'daemon', arg: value };
  if (/^[^/]*:/.test(value)) {
    throw new DataInputError(
      `${field}: "${value}" is a remote-shell (ssh) or unknown remote; rsync_transfer reaches local paths in the data dirs and rsync daemons (rsync://host/module/path or host::module/path)`,
    );
  }
  const trailing = value.length > 1 && value.endsWith('/');
  const path = trailing ? value.replace(/\/+$/, '') : value;
  const confined = await confine(path, env.dataDirs, {
    field,
    ...(field === 'source' ? { mustExist: true } : { forWrite: true }),
  });
  // A trailing slash on the source means "the contents of": keep it on the resolved path.
  return { kind: 'local', arg: confined.real + (trailing ? '/' : ''), confined };
}

/** `--info=progress2` lines: "  1,234,567  45%   12.34MB/s    0:00:01 (xfr#3, to-chk=10/20)". */
export function parseProgress2(line: string): { percent: number; message: string } | undefined {
  const m = /^\s*([\d,.]+[KMGT]?)\s+(\d{1,3})%\s+(\S+\/s)\s+(\d+:\d\d:\d\d)/.exec(line);
  if (!m) return undefined;
  return { percent: Number(m[2]), message: `${m[1]} bytes, ${m[3]}, ${m[4]}` };
}

const num = (s: string | undefined): number => (s ? Number(s.replace(/,/g, '')) : 0);

/** The figures of `--stats`. */
export function parseStats(lines: string[]): Omit<RsyncResult, 'dry_run' | 'duration_ms'> {
  const text = lines.join('\n');
  const get = (re: RegExp): number => num(re.exec(text)?.[1]);
  return {
    files_transferred: get(/Number of regular files transferred:\s*([\d,]+)/),
    bytes_transferred: get(/Total transferred file size:\s*([\d,]+)/),
    total_files: get(/Number of files:\s*([\d,]+)/),
    total_size: get(/Total file size:\s*([\d,]+)/),
    deleted_files: get(/Number of deleted files:\s*([\d,]+)/),
    bytes_sent: get(/Total bytes sent:\s*([\d,]+)/),
    bytes_received: get(/Total bytes received:\s*([\d,]+)/),
    speed_bytes_per_sec: get(/received [\d,]+ bytes\s+([\d,.]+) bytes\/sec/),
  };
}

/** Validates its input itself (a call outside a job); a job type calls rsyncTransferParsed. */
export async function rsyncTransfer(input: RsyncInput, ctx: CoreContext, env: DataEnv): Promise<RsyncResult> {
  return rsyncTransferParsed(rsyncInput().parse(input), ctx, env);
}

/** rsyncTransfer for an input its job type's schema parsed (the daemon or the handler did). */
export async function rsyncTransferParsed(
  opts: RsyncTransferOptions,
  ctx: CoreContext,
  env: DataEnv,
): Promise<RsyncResult> {
  let options: RsyncOptions = opts.options ?? {};
  if (opts.rsync_options !== undefined)
    options = { ...parseLegacyRsyncOptions(opts.rsync_options), ...options };
  const src = await endpoint(opts.source, 'source', env);
  const dst = await endpoint(opts.destination, 'destination', env);
  if (src.kind === 'daemon' && dst.kind === 'daemon') {
    throw new DataInputError(
      'source and destination are both rsync daemons; one of them must be a local path',
    );
  }
  const args = ['--info=progress2', '--stats', '--no-inc-recursive', ...rsyncArgs(options)];
  if (opts.password_file !== undefined) {
    const pw = await confine(opts.password_file, env.dataDirs, {
      field: 'password_file',
      mustExist: true,
      kind: 'file',
    });
    args.push(`--password-file=${pw.real}`);
  }
  if (dst.kind === 'local') {
    // rsync creates the last directory only; the parents come from here, after a last check.
    await recheck(dst.confined, env.dataDirs);
    if (src.kind === 'daemon' || opts.source.endsWith('/'))
      await mkdir(dst.confined.real, { recursive: true });
  }
  const lines: string[] = [];
  const started = Date.now();
  ctx.progress(0, 'rsync starting');
  try {
    await runTool(
      {
        tool: RSYNC,
        args: [...args, '--', src.arg, dst.arg],
        progress: parseProgress2,
        progressFrom: 'stdout',
        onLine: (l, stream) => {
          if (stream === 'stdout' && !parseProgress2(l)) lines.push(l);
        },
        killGraceMs: env.killGraceMs,
      },
      ctx,
    );
  } catch (err) {
    throw asAbort(err, ctx.signal, 'rsync_transfer');
  }
  const stats = parseStats(lines);
  ctx.progress(100, `${stats.files_transferred} files, ${stats.bytes_transferred} bytes`);
  return { ...stats, dry_run: !!options.dry_run, duration_ms: Date.now() - started };
}
