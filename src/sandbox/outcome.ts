/**
 * How an attempt ended (Execution), turned into the RunOutcome the daemon records: the error built
 * for it, the output decoded, the resources measured.
 */
import { deserialize } from 'node:v8';
import { ChildCrashError, UnserializableOutputError, serializeError, type JobdError } from '../errors.js';
import type { JobResources, SerializedError } from '../types.js';
import type { ExitInfo } from './processes.js';
import type { DoneMessage } from './protocol.js';
import type { FailureReason, RunOutcome } from './types.js';

export type KillReason = 'timeout' | 'aborted' | 'memory';

export type Execution =
  | { kind: 'done'; done: DoneMessage }
  | { kind: 'exit'; exit: ExitInfo }
  | { kind: 'kill'; reason: KillReason; error: SerializedError }
  | { kind: 'unsendable'; error: SerializedError }
  /** A pooled child's queued job taken out before it started (an abort): nothing of it ran. */
  | { kind: 'dropped'; error: SerializedError }
  /** A pooled child held the job, not running it, when it exited (another job's kill, a crash). */
  | { kind: 'released'; exit: ExitInfo };

export interface Sampled {
  peakRssBytes?: number;
  lastCpuMs?: number;
}

/** A daemon-side error as it is recorded: its stack would only show the sandbox's own frames. */
export function plain(err: JobdError): SerializedError {
  const e = serializeError(err);
  delete e.stack;
  return e;
}

function crashError(exit: ExitInfo, taint: SerializedError | null, beforeDone: boolean): SerializedError {
  let message: string;
  if (exit.spawnError) message = `could not start the child process: ${exit.spawnError.message}`;
  else if (exit.lost) message = 'child process ended unseen (the spawn helper that started it exited first)';
  else if (exit.signal) message = `child process was killed by signal ${exit.signal}`;
  else message = `child process exited with code ${exit.code}`;
  if (beforeDone && !exit.spawnError) message += ' before the job finished';
  if (taint) message += ` (uncaught exception: ${taint.name}: ${taint.message})`;
  const e = plain(new ChildCrashError(message));
  if (taint?.stack) e.stack = taint.stack;
  return e;
}

/** The child's encoded output back to the value the handler returned. */
function decodeOutput(
  encoded: Uint8Array | undefined,
  json: string | undefined,
): { output: unknown } | { error: SerializedError } {
  if (encoded === undefined && json === undefined) return { output: undefined };
  try {
    return { output: json !== undefined ? (JSON.parse(json) as unknown) : deserialize(encoded!) };
  } catch (err) {
    // The child encoded it with the same v8 format (or JSON); only a broken frame gets here.
    return {
      error: plain(
        new UnserializableOutputError(`its encoding could not be decoded (${serializeError(err).message})`),
      ),
    };
  }
}

/** The outcome of an attempt; `t0` is when run() began, `killed` the exit of a child that had to be killed. */
export function buildOutcome(
  ex: Execution,
  killed: ExitInfo | undefined,
  t0: number,
  sampled: Sampled,
  taint: SerializedError | null,
  cpuBaseMs: number,
  reportedRss: number | undefined,
  logTail: string,
): RunOutcome {
  const resources: JobResources = { wallMs: Math.round(performance.now() - t0) };
  const peak = Math.max(sampled.peakRssBytes ?? 0, reportedRss ?? 0);
  if (peak > 0) resources.peakRssBytes = peak;
  const cpuTotal = ex.kind === 'done' ? ex.done.usage.cpuMs : sampled.lastCpuMs;
  if (cpuTotal !== undefined) resources.cpuMs = Math.max(0, Math.round((cpuTotal - cpuBaseMs) * 1000) / 1000);

  if (ex.kind === 'done') {
    // Lifecycle hooks that threw or timed out travel with the outcome, which they never change.
    const hooks = ex.done.hookErrors?.length ? { hookErrors: ex.done.hookErrors } : {};
    if (ex.done.ok) {
      const decoded = decodeOutput(ex.done.output, ex.done.outputJson);
      if ('output' in decoded) {
        const { spawned, wait } = ex.done;
        return {
          status: 'completed',
          output: decoded.output,
          resources,
          logTail,
          ...(spawned?.length ? { spawned } : {}),
          ...(wait ? { wait } : {}),
          ...hooks,
        };
      }
      return { status: 'failed', reason: 'error', error: decoded.error, resources, logTail, ...hooks };
    }
    return {
      status: 'failed',
      reason: 'error',
      error: ex.done.error ?? { name: 'Error', message: 'handler failed without an error' },
      resources,
      logTail,
      ...hooks,
    };
  }
  if (ex.kind === 'exit') {
    return {
      status: 'failed',
      reason: 'crash',
      error: crashError(ex.exit, taint, true),
      exitCode: ex.exit.code,
      signal: ex.exit.signal,
      resources,
      logTail,
    };
  }
  if (ex.kind === 'released') {
    const how = ex.exit.signal ? `signal ${ex.exit.signal}` : `exit code ${ex.exit.code}`;
    return {
      status: 'failed',
      reason: 'released',
      error: plain(
        new ChildCrashError(
          `the pooled child that held this job ended (${how}) while another of its jobs ran; the job had not started, or its result was not sent, and runs again`,
        ),
      ),
      resources,
      logTail,
    };
  }
  const reason: FailureReason = ex.kind === 'kill' ? ex.reason : ex.kind === 'dropped' ? 'aborted' : 'error';
  return {
    status: 'failed',
    reason,
    error: ex.error,
    ...(killed ? { exitCode: killed.code, signal: killed.signal } : {}),
    resources,
    logTail,
  };
}
