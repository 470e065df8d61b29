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
 * Output is encoded by the child with v8.serialize (structured clone) and decoded by the daemon, so
 * the daemon receives exactly the value returned: plain objects (also null-prototype ones, which
 * arrive with Object.prototype), arrays (holes kept), strings, numbers (NaN, -0), BigInt, booleans,
 * null, undefined, Date, RegExp, Map, Set, ArrayBuffer and typed arrays (a Buffer arrives as a
 * Uint8Array), shared and circular references as such. Anything structured clone would drop or
 * change (functions, symbols, class instances such as URL or an Error, whose prototype and private
 * state would be lost, promises, proxies) fails the attempt with UnserializableOutputError
 * (JOBD_UNSERIALIZABLE_OUTPUT), naming where in the output it sits; an output whose encoding passes
 * SandboxOptions.maxOutputBytes fails it with OutputTooLargeError (JOBD_OUTPUT_TOO_LARGE). Neither
 * harms the child or the channel. Whether the output can be stored (BSON) is the daemon's business.
 * (An isolated child sends plain data that JSON carries exactly as JSON text instead, when an upper
 * bound of its v8 encoding is within the limit: the value that arrives and the limit are the same.)
 *
 * A handler may `import { DoNotRetryError } from 'jobd'` (or require it) wherever it lives: see
 * childEntry.cts. A module that cannot be loaded fails the attempt with HandlerLoadError
 * (JOBD_HANDLER_LOAD), which is not retried. A handler whose promise never settles while nothing is
 * left to run fails with HandlerNeverSettledError (JOBD_HANDLER_NEVER_SETTLED), in both modes.
 *
 * Entry point: `createSandbox(options: SandboxOptions): Sandbox` from src/sandbox/index.ts.
 */
import type { ChildFailurePolicy, JobResources, ResourceAllocation, SerializedError } from '../types.js';
import type { HookFailure, HooksRequest, JobFamily, SpawnedChild } from './protocol.js';
import type { PrestartSpec } from './prestart.js';

export type { JobFamily, SpawnedChild } from './protocol.js';

export interface RunRequest {
  jobId: string;
  type: string;
  attempt: number;
  /** Absolute path (or package specifier) of the handler module. */
  handler: string;
  mode: 'pooled' | 'isolated';
  params: unknown;
  /** The daemon parsed a typed job's input (params is the parsed input) and checks its output. */
  checks?: { paths: unknown[] };
  /**
   * Isolated: counted from run(), child start-up (unless the child was started ahead: prestart) and
   * module loading included. Pooled: the wait for a
   * child counts from run(); then the job has the whole timeout from when its child starts it (a
   * job queued in a child behind others waits without its clock running). Infinity: no timeout.
   */
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
  /** What the job was given of the daemon's resources: ctx.allocation. */
  allocation?: ResourceAllocation;
  /**
   * Lifecycle hooks (childHooks.cts): their bound and what the child needs to decide about a retry as
   * the daemon will. Once the handler settled, the timeout gives way to the hook's bound.
   */
  hooks?: HooksRequest;
  /** Dependencies' results, a resumed parent's children (ctx.dependencies, ctx.children). */
  family?: JobFamily;
}

/**
 * released: a pooled child held the job but was not running it when the child ended (another job's
 * timeout, crash or memory kill): nothing of it ran, or its result was lost with the child. The
 * daemon gives the attempt back (requeue), as at a graceful shutdown.
 */
export type FailureReason = 'error' | 'timeout' | 'crash' | 'memory' | 'aborted' | 'released';

/**
 * resources: wallMs from run() to the end; peakRssBytes the highest RSS seen (pidusage samples and
 * the child's own report); cpuMs the child's user+system CPU for this job (pooled: the difference
 * from the job's start; isolated: the whole process, start-up included). Fields a killed or crashed
 * child could not report are left out.
 */
export type RunOutcome = (
  | {
      status: 'completed';
      output: unknown;
      resources: JobResources;
      logTail: string;
      /** Children the handler spawned, to be written before the outcome. */
      spawned?: SpawnedChild[];
      /** The handler waits for its children (ctx.waitForChildren) under this policy. */
      wait?: ChildFailurePolicy;
    }
  | {
      status: 'failed';
      error: SerializedError;
      resources: JobResources;
      logTail: string;
      reason: FailureReason;
      exitCode?: number | null;
      signal?: string | null;
    }
) & {
  /** Lifecycle hooks that threw or timed out; they never change the status. */
  hookErrors?: HookFailure[];
};

export interface RunHooks {
  /** Coalesced: at most once per progressIntervalMs; the last value is always delivered. */
  onProgress(percent: number, message?: string): void;
  /** Abort (lost lease, cancel, shutdown): the child is killed; the outcome's reason is 'aborted'. */
  signal?: AbortSignal;
  /**
   * The same as `signal`, without an AbortSignal (sandbox/lazyAbort.cts is one): the daemon's, since an
   * AbortSignal per job is a measurable cost there (sandbox/abortSource.ts). Used instead of `signal`.
   */
  abort?: AbortSource;
}

/** An abort to listen to. */
export interface AbortSource {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Calls `fn` once, at the abort (not when already aborted); returns the function that removes it. */
  onAbort(fn: () => void): () => void;
}

export interface Sandbox {
  /**
   * Run one job. Never rejects for job-level problems: every failure is a 'failed' outcome.
   * Resolves only after the job's child has exited when the child had to be killed
   * (timeout, abort, memory, crash), so the pid no longer exists when the attempt is recorded.
   * Rejects only when the sandbox is closed.
   */
  run(req: RunRequest, hooks: RunHooks): Promise<RunOutcome>;
  /**
   * A job that will run isolated once a slot frees (claimed ahead): its child may be started now,
   * within SandboxOptions.prestart, and waits for the job (prestart.ts). The run uses it when it
   * still fits (same handler, environment, cwd and log file).
   */
  prestart?(spec: PrestartSpec): void;
  /** The job will not run (any more): a child started ahead for it is killed. Safe to call always. */
  discard?(jobId: string): void;
  /** Kill every child (SIGTERM, then SIGKILL after killGraceMs); resolves when all are gone. */
  close(): Promise<void>;
  stats(): SandboxStats;
}

export interface SandboxStats {
  /** Live child processes (pooled and isolated, started ahead of their jobs included). */
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
  /**
   * Pooled children per kind that short jobs are queued on, several at a time (see pool.ts); 0 or
   * absent: every pooled job gets a child of its own.
   */
  sharedChildren?: number;
  /** Recycle a pooled child whose RSS is above this after a job. */
  maxRssBytes: number;
  /** How often children are sampled with pidusage. */
  sampleIntervalMs: number;
  /** SIGTERM → SIGKILL grace used by close() and for recycling. */
  killGraceMs: number;
  /**
   * At most this many child processes alive at any instant (pooled and isolated, counting those
   * starting and those on their way out): the daemon's concurrency. A run that would exceed it waits.
   */
  maxChildren: number;
  /**
   * At most this many isolated children started ahead of their jobs (Sandbox.prestart), alive on top
   * of maxChildren; 0 or absent: none.
   */
  prestart?: number;
  /**
   * Isolated children are started by a small helper process rather than by this one (spawnHelper.ts):
   * a fork of a large process costs it far more CPU. Default false.
   */
  spawnHelper?: boolean;
  /** Largest encoded output (v8 structured clone bytes) a handler may return; default 64 MiB. */
  maxOutputBytes?: number;
  logger?: SandboxLogger;
}
