/**
 * The sandbox contract: how the daemon runs one job's handler in a child process.
 *
 * Handler modules
 * ---------------
 * A handler module has a default export (or a named export `handler`):
 *
 *     export default async function (params, ctx: JobContext) { ...; return output; }
 *
 * `ctx` is the JobContext of src/types.ts: jobId, type, attempt, progress(percent, message),
 * signal (aborted when the job must stop), logger (lines go to the job's log file), paths.log.
 * The module is loaded with dynamic `import()`; pooled children cache it across jobs.
 *
 * Output travels back over the IPC channel with Node's 'advanced' serialization (structured
 * clone): plain objects, arrays, strings, numbers, booleans, null, Date, Map, Set, RegExp,
 * typed arrays and Buffers (as Uint8Array) are fine. `undefined` output is delivered as `undefined`.
 * Functions, symbols, class instances with methods and other non-cloneable values make the
 * attempt fail with error name 'UnserializableOutputError' (code JOBD_UNSERIALIZABLE_OUTPUT).
 * Storing the output in MongoDB is the daemon's business (BSON).
 *
 * Entry point: `createSandbox(options: SandboxOptions): Sandbox` from src/sandbox/index.ts.
 */
import type { JobResources, SerializedError } from '../types.js';

export interface RunRequest {
  jobId: string;
  type: string;
  attempt: number;
  /** Absolute path (or package specifier) of the handler module. */
  handler: string;
  mode: 'pooled' | 'isolated';
  params: unknown;
  /** Counted from run(): includes child start-up (isolated) and module loading. Infinity: no timeout. */
  timeoutMs: number;
  /** Between SIGTERM and SIGKILL when this job's child must die. */
  killGraceMs: number;
  /** Kill the child when its sampled RSS (the whole child process) exceeds this many bytes. */
  memoryLimitBytes?: number;
  /**
   * Per-job log file; the job's stdout and stderr are appended here (parent folders are created).
   * Isolated children write into it directly (it always exists afterwards); pooled children's output
   * is piped through the daemon and the file is created on the first byte of output.
   */
  logFile: string;
  /** Keep this many last bytes of output for the job document. */
  logTailBytes: number;
  /** At most one onProgress call per this many ms (last value wins, final value flushed). */
  progressIntervalMs: number;
  /** Extra environment variables (pooled: set for the job's duration, then restored). */
  env?: Record<string, string>;
  /** Working directory (pooled: process.chdir for the job's duration, then restored). */
  cwd?: string;
}

export type FailureReason = 'error' | 'timeout' | 'crash' | 'memory' | 'aborted';

/**
 * resources: wallMs from run() to the end; peakRssBytes the highest RSS seen (pidusage samples and
 * the child's own report); cpuMs the child's user+system CPU for this job (pooled: the difference
 * from the job's start; isolated: the whole process, start-up included). Fields a killed or crashed
 * child could not report are left out.
 */
export type RunOutcome =
  | { status: 'completed'; output: unknown; resources: JobResources; logTail: string }
  | {
      status: 'failed';
      error: SerializedError;
      resources: JobResources;
      logTail: string;
      reason: FailureReason;
      exitCode?: number | null;
      signal?: string | null;
    };

export interface RunHooks {
  /** Coalesced: at most once per progressIntervalMs; the last value is always delivered. */
  onProgress(percent: number, message?: string): void;
  /** Abort (lost lease, cancel, shutdown): the child is killed; the outcome's reason is 'aborted'. */
  signal?: AbortSignal;
}

export interface Sandbox {
  /**
   * Run one job. Never rejects for job-level problems: every failure is a 'failed' outcome.
   * Resolves only after the job's child has exited when the child had to be killed
   * (timeout, abort, memory, crash), so the pid no longer exists when the attempt is recorded.
   * Rejects only when the sandbox is closed.
   */
  run(req: RunRequest, hooks: RunHooks): Promise<RunOutcome>;
  /** Kill every child (SIGTERM, then SIGKILL after killGraceMs); resolves when all are gone. */
  close(): Promise<void>;
  stats(): SandboxStats;
}

export interface SandboxStats {
  /** Live child processes (pooled and isolated). */
  children: number;
  /** Pooled children waiting for a job. */
  idle: number;
  /** Children running a job. */
  busy: number;
}

/** pino-compatible subset; the sandbox logs child lifecycle (recycles, kills) through it. */
export interface SandboxLogger {
  debug?(obj: Record<string, unknown>, msg?: string): void;
  info(obj: Record<string, unknown>, msg?: string): void;
  warn(obj: Record<string, unknown>, msg?: string): void;
  error(obj: Record<string, unknown>, msg?: string): void;
}

export interface SandboxOptions {
  /** Recycle a pooled child after this many jobs. */
  maxJobsPerChild: number;
  /** Recycle a pooled child whose RSS is above this after a job. */
  maxRssBytes: number;
  /** How often children are sampled with pidusage. */
  sampleIntervalMs: number;
  /** SIGTERM → SIGKILL grace used by close() and for recycling. */
  killGraceMs: number;
  logger?: SandboxLogger;
}
