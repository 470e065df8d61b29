/**
 * Running rclone for the dataset cores: the config file and its secrets, JSON logs with stats every
 * second (`--use-json-log --stats 1s`), progress from those stats, the last stats as the result, and
 * failures told apart by what rclone said: a network failure is retryable whatever the exit code (rclone
 * exits 1 for a refused connection, as for a usage error).
 */
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError, ToolFailedError } from '../../lib/errors.js';
import { startTool, type ToolRun } from '../../lib/tool.js';
import { RCLONE, type ExitMeaning } from '../../lib/toolTable.js';
import type { DataEnv } from './env.js';
import type { RcloneConfig } from './rcloneConfig.js';

/** Options shared by the rclone cores: a typed list, never raw flags. */
export const rcloneOptions = lazySchema((z) =>
  z
    .object({
      bandwidth_limit: z
        .string()
        .regex(/^\d+(\.\d+)?[BKMGTP]?$/i, 'a rate such as 500K, 10M or 1G (bytes per second)')
        .optional(),
      transfers: z.number().int().min(1).max(64).optional(),
      checkers: z.number().int().min(1).max(64).optional(),
      checksum: z.boolean().optional().describe('compare by hash instead of size and modification time'),
      exclude: z
        .array(z.string().regex(/^[^\0\n]+$/))
        .optional()
        .describe('rclone filter patterns'),
      retries: z.number().int().min(1).max(10).optional().describe("rclone's own retries (default 3)"),
      timeout_seconds: z.number().int().min(1).max(3600).optional().describe('I/O idle timeout'),
      dry_run: z.boolean().optional(),
    })
    .strict(),
);
export type RcloneOptions = z.infer<ReturnType<typeof rcloneOptions>>;

export function rcloneOptionArgs(o: RcloneOptions | undefined): string[] {
  if (!o) return [];
  const a: string[] = [];
  if (o.bandwidth_limit) a.push(`--bwlimit=${o.bandwidth_limit}`);
  if (o.transfers) a.push(`--transfers=${o.transfers}`);
  if (o.checkers) a.push(`--checkers=${o.checkers}`);
  if (o.checksum) a.push('--checksum');
  for (const e of o.exclude ?? []) a.push(`--exclude=${e}`);
  if (o.retries) a.push(`--retries=${o.retries}`);
  if (o.timeout_seconds) a.push(`--contimeout=${o.timeout_seconds}s`, `--timeout=${o.timeout_seconds}s`);
  if (o.dry_run) a.push('--dry-run');
  return a;
}

/** A remote path: a remote named in the config, then its path. */
const REMOTE = /^([A-Za-z0-9_][A-Za-z0-9_.\- ]*):(.*)$/;

export function parseRemote(value: string, field: string): { remote: string; path: string } | null {
  const m = REMOTE.exec(value);
  // `scheme://...` is a URL, not a remote of the config.
  if (!m || m[2]!.startsWith('//')) return null;
  if (m[2]!.includes('\0') || m[2]!.split('/').includes('..')) {
    throw new DataInputError(
      `${field}: ${JSON.stringify(value)}: the remote path must not hold NUL bytes or ".." segments`,
    );
  }
  return { remote: m[1]!, path: m[2]! };
}

/** rclone's stats object in its JSON log (the fields used here). */
export interface RcloneStats {
  bytes: number;
  totalBytes: number;
  transfers: number;
  totalTransfers: number;
  checks: number;
  deletes: number;
  errors: number;
  speed: number;
  elapsedTime: number;
  lastError?: string;
}

interface JsonLogLine {
  level?: string;
  msg?: string;
  object?: string;
  stats?: RcloneStats;
}

function parseJsonLine(line: string): JsonLogLine | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as JsonLogLine;
  } catch {
    return undefined;
  }
}

const NETWORK =
  /connection refused|dial tcp|no such host|i\/o timeout|connection reset|network is unreachable|host is unreachable|TLS handshake|context deadline exceeded|unexpected EOF|broken pipe|\b50[234]\b|too many requests|\b429\b|temporary failure/i;

/** rclone's exit codes, except that a failure that reads as a network failure is retried. */
export function classifyRclone(tail: string): ExitMeaning | undefined {
  if (NETWORK.test(tail)) return { retryable: true, meaning: 'the remote could not be reached' };
  if (/didn't find section in config file|couldn't find type/i.test(tail))
    return { retryable: false, meaning: 'the remote is not defined in the rclone config' };
  if (/\b(401|403)\b|unauthori[sz]ed|forbidden|authentication failed|permission denied/i.test(tail))
    return { retryable: false, meaning: 'the remote refused the credentials' };
  return undefined; // rclone's documented exit codes decide
}

export interface RcloneRunOptions {
  args: string[];
  config: RcloneConfig;
  env: DataEnv;
  /** Lines written to rclone's stdin (for `--files-from-raw -`). */
  stdinLines?: string[];
  /** Share of the job's progress this run covers: [from, to] percent. Default [0, 100]. */
  span?: [number, number];
  label: string;
}

export interface RcloneRunResult {
  stats: RcloneStats | null;
  /** Messages of error-level log lines (redacted), with their object. */
  errors: Array<{ object?: string; msg: string }>;
  /** Messages of notice-level lines without stats (e.g. `rclone check`'s summaries). */
  notices: string[];
  stdout: string[];
  pid: number;
}

/** Runs rclone with the config, JSON logs and stats; progress from the stats. */
export async function runRclone(o: RcloneRunOptions, ctx: CoreContext): Promise<RcloneRunResult> {
  const [from, to] = o.span ?? [0, 100];
  let stats: RcloneStats | null = null;
  const errors: RcloneRunResult['errors'] = [];
  const notices: string[] = [];
  const stdout: string[] = [];
  const errorTexts: string[] = [];
  let run: ToolRun;
  try {
    run = startTool(
      {
        tool: RCLONE,
        ...(o.env.rclone?.program ? { program: o.env.rclone.program } : {}),
        args: [
          '--config',
          o.config.path,
          '--use-json-log',
          '--stats=1s',
          '--stats-log-level=NOTICE',
          '--verbose',
          ...o.args,
        ],
        ...(o.stdinLines ? { stdin: 'pipe' as const } : {}),
        secrets: o.config.secrets,
        killGraceMs: o.env.killGraceMs,
        classify: (_code, tail) => classifyRclone([tail, ...errorTexts].join('\n')),
        progressFrom: 'stderr',
        progress: (line) => {
          const s = parseJsonLine(line)?.stats;
          if (!s || !(s.totalBytes > 0)) return undefined;
          const share = Math.min(1, s.bytes / s.totalBytes);
          return {
            percent: from + share * (to - from),
            message: `${o.label}: ${s.bytes}/${s.totalBytes} bytes, ${s.transfers}/${s.totalTransfers} files`,
          };
        },
        onLine: (line, stream) => {
          if (stream === 'stdout') return void stdout.push(line);
          const j = parseJsonLine(line);
          if (!j) {
            // Messages printed before logging is set up ("Failed to create file system ...").
            errorTexts.push(line);
            return;
          }
          if (j.stats) stats = j.stats;
          else if (j.level === 'error' && j.msg) {
            errors.push({ ...(j.object ? { object: j.object } : {}), msg: j.msg });
            errorTexts.push(j.msg);
          } else if (j.msg && (j.level === 'notice' || j.level === 'warning')) notices.push(j.msg);
        },
      },
      ctx,
    );
  } catch (err) {
    throw asAbort(err, ctx.signal, o.label);
  }
  if (o.stdinLines && run.stdin) {
    run.stdin.on('error', () => {}); // rclone exiting early: its exit code says why
    run.stdin.end(o.stdinLines.map((l) => `${l}\n`).join(''));
  }
  try {
    await run.done;
  } catch (err) {
    if (err instanceof ToolFailedError && errorTexts.length) {
      // rclone's JSON log is hard to read in a tail: say what it reported instead.
      const said = [...new Set(errorTexts)].slice(-5).join('; ');
      const failed = new ToolFailedError({
        tool: `rclone (${o.label})`,
        message: `${o.label}: rclone ${err.exitCode === null ? 'was killed' : `exited with code ${err.exitCode}`}; ${err.retryable ? 'retryable' : 'not retryable'}; rclone said: ${said.slice(0, 2000)}`,
        retryable: err.retryable,
        exitCode: err.exitCode,
        signal: err.signal,
        stderrTail: err.stderrTail,
      });
      // What rclone reported per object (a file that differs, one that failed), for the caller.
      failed.details = { errors, notices, stdout };
      throw failed;
    }
    throw asAbort(err, ctx.signal, o.label);
  }
  return { stats, errors, notices, stdout, pid: run.pid };
}
