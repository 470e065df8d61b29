/**
 * One small error tree (STYLE.md habit 7). Each class has a stable `name` and `code`, and keeps `cause`.
 * Across the child-process boundary errors travel as plain objects: match on name/code, never instanceof.
 */
import type { SerializedError } from './types.js';

export class JobdError extends Error {
  readonly code: string;
  constructor(message: string, code = 'JOBD_ERROR', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'JobdError';
    this.code = code;
  }
}

/** Bad settings or arguments. Processes exit with EXIT_CODES.config. */
export class ConfigError extends JobdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'JOBD_CONFIG', options);
    this.name = 'ConfigError';
  }
}

/** Bad input to an API or CLI command (a field, its value, what is allowed). */
export class ValidationError extends JobdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'JOBD_VALIDATION', options);
    this.name = 'ValidationError';
  }
}

export class NotFoundError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_NOT_FOUND');
    this.name = 'NotFoundError';
  }
}

/** A resume point that is no longer in the server's change history: resuming would leave a gap. */
export class ResumePointLostError extends JobdError {
  constructor(cause?: unknown) {
    super(
      'the resume point (Last-Event-ID) is no longer in the database change history: events after it may be lost; reconnect without Last-Event-ID and re-read the jobs',
      'JOBD_RESUME_POINT_LOST',
      { cause },
    );
    this.name = 'ResumePointLostError';
  }
}

/** The server offers no change streams (a standalone MongoDB). */
export class ChangeStreamsUnavailableError extends JobdError {
  constructor(cause?: unknown) {
    super(
      'the database offers no change streams (MongoDB must run as a replica set)',
      'JOBD_NO_CHANGE_STREAMS',
      {
        cause,
      },
    );
    this.name = 'ChangeStreamsUnavailableError';
  }
}

/** A state change the state machine does not allow (docs/state-machine.md). */
export class IllegalTransitionError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_ILLEGAL_TRANSITION');
    this.name = 'IllegalTransitionError';
  }
}

/** A dataset pipeline was asked for while the dataset still has unfinished jobs (exit 1). */
export class DatasetBusyError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_DATASET_BUSY');
    this.name = 'DatasetBusyError';
  }
}

/** A guarded write matched nothing: the job is no longer running under this lease. */
export class LeaseLostError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_LEASE_LOST');
    this.name = 'LeaseLostError';
  }
}

export class UnknownJobTypeError extends JobdError {
  constructor(type: string, known: string[]) {
    super(
      `unknown job type "${type}"; this daemon knows: ${known.length ? known.join(', ') : '(none)'}`,
      'JOBD_UNKNOWN_JOB_TYPE',
    );
    this.name = 'UnknownJobTypeError';
  }
}

export class JobTimeoutError extends JobdError {
  constructor(timeoutMs: number) {
    super(`job timed out after ${timeoutMs} ms`, 'JOBD_TIMEOUT');
    this.name = 'JobTimeoutError';
  }
}

/**
 * A handler's result that MongoDB cannot store as it is (circular, a BigInt, a function, over the
 * 16 MiB document limit, ...). Deterministic, so the job fails without further attempts.
 */
export class UnencodableResultError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_UNENCODABLE_RESULT');
    this.name = 'UnencodableResultError';
  }
}

/** The database refused to store an attempt's outcome (not an outage: it would refuse it again). */
export class OutcomeRefusedError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_OUTCOME_REFUSED');
    this.name = 'OutcomeRefusedError';
  }
}

/**
 * The sandbox's errors. They are built in the daemon or in a child process and reach the job document
 * as plain objects (SerializedError), so everything that reads them matches on `name` and `code`.
 */

/** The job was stopped by jobd: a cancel, a lost lease, a shutdown. */
export class JobAbortedError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_ABORTED');
    this.name = 'JobAbortedError';
  }
}

/** The child process running the handler died (an exit, a signal) or could not be started. */
export class ChildCrashError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_CHILD_CRASH');
    this.name = 'ChildCrashError';
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** The child's RSS passed the job type's memory limit; the child was killed. */
export class MemoryLimitError extends JobdError {
  constructor(limitBytes: number, rssBytes: number) {
    super(
      `job exceeded its memory limit of ${mib(limitBytes)} (${limitBytes} bytes): child RSS was ${mib(rssBytes)} (${rssBytes} bytes)`,
      'JOBD_MEMORY_LIMIT',
    );
    this.name = 'MemoryLimitError';
  }
}

/** The job's params cannot be sent to a child process (structured clone refused them). */
export class UnserializableParamsError extends JobdError {
  constructor(reason: string) {
    super(`job params cannot be sent to the child (${reason})`, 'JOBD_UNSERIALIZABLE_PARAMS');
    this.name = 'UnserializableParamsError';
  }
}

/** What a handler returned cannot travel to jobd unchanged (a function, a class instance, ...). Not retried. */
export class UnserializableOutputError extends JobdError {
  constructor(reason: string) {
    super(
      `handler output cannot be sent to jobd: ${reason}; return plain data`,
      'JOBD_UNSERIALIZABLE_OUTPUT',
    );
    this.name = 'UnserializableOutputError';
  }
}

/** What a handler returned is too big to be a job's result. Not retried. */
export class OutputTooLargeError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_OUTPUT_TOO_LARGE');
    this.name = 'OutputTooLargeError';
  }
}

/**
 * The handler module cannot be loaded: not found, a syntax error, a missing import, no handler export.
 * Not retried (see isDoNotRetry): the next attempt would load the same file the same way.
 */
export class HandlerLoadError extends JobdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, HANDLER_LOAD_CODE, options);
    this.name = 'HandlerLoadError';
  }
}
export const HANDLER_LOAD_CODE = 'JOBD_HANDLER_LOAD';

/** The handler's promise never settled, and nothing was left for the child to run. */
export class HandlerNeverSettledError extends JobdError {
  constructor() {
    super(
      "the handler's promise never settled and nothing was left to run (the event loop emptied): " +
        'a promise that is never resolved or rejected, or one waiting on something that was unref()ed',
      'JOBD_HANDLER_NEVER_SETTLED',
    );
    this.name = 'HandlerNeverSettledError';
  }
}

/** Throw from a handler to fail the job at once, without further attempts. */
export class DoNotRetryError extends JobdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, DO_NOT_RETRY_CODE, options);
    this.name = 'DoNotRetryError';
  }
}
export const DO_NOT_RETRY_CODE = 'JOBD_DO_NOT_RETRY';

/**
 * A job's input does not match its type's input schema when the job runs (the schema changed, or a
 * data-dir path now resolves outside). Deterministic, so the job fails without further attempts.
 */
export class InvalidInputError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_INVALID_INPUT');
    this.name = 'InvalidInputError';
  }
}

/** A handler returned an output its type's output schema refuses: the attempt fails. */
export class InvalidOutputError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_INVALID_OUTPUT');
    this.name = 'InvalidOutputError';
  }
}

/** Documented process exit codes of jobd and jobctl. */
export const EXIT_CODES = {
  ok: 0,
  /** A runtime failure (database unreachable, command failed). */
  failure: 1,
  /** Bad settings, flags or arguments. */
  config: 2,
  /** The named job (or worker) does not exist. */
  notFound: 3,
  /** Another live jobd owns the pidfile. */
  alreadyRunning: 4,
} as const;

/** Turn anything thrown into a plain, serialisable error. Handlers may throw non-Errors. */
/** An error's structured `details` (a problem list), kept as JSON; dropped when it is not JSON. */
function detailsOf(err: object): { details?: unknown } {
  const d = (err as { details?: unknown }).details;
  if (d === undefined) return {};
  try {
    const text = JSON.stringify(d);
    return text === undefined ? {} : { details: JSON.parse(text) as unknown };
  } catch {
    return {};
  }
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return {
      name: err.name || 'Error',
      ...(code !== undefined ? { code: String(code) } : {}),
      message: err.message,
      ...(err.stack ? { stack: err.stack } : {}),
      ...detailsOf(err),
    };
  }
  if (err && typeof err === 'object') {
    const o = err as Record<string, unknown>;
    if (typeof o.message === 'string' && typeof o.name === 'string') {
      return {
        name: o.name,
        message: o.message,
        ...(o.code !== undefined ? { code: String(o.code) } : {}),
        ...(typeof o.stack === 'string' ? { stack: o.stack } : {}),
        ...detailsOf(o),
      };
    }
  }
  let text: string;
  try {
    text = typeof err === 'string' ? err : (JSON.stringify(err) ?? String(err));
  } catch {
    text = String(err);
  }
  return { name: 'NonError', message: `handler threw a non-Error value: ${text}` };
}

/** Codes of the sandbox's errors that the same handler would meet again: a module that cannot load, an output that cannot leave the child. */
const SAME_AGAIN_CODES: ReadonlySet<string> = new Set([
  HANDLER_LOAD_CODE,
  'JOBD_UNSERIALIZABLE_OUTPUT',
  'JOBD_OUTPUT_TOO_LARGE',
  // A job's input its type refuses when the job starts (defineJobType): the same input again.
  'JOBD_INVALID_INPUT',
]);

/** Errors whose next attempt would fail the same way: a DoNotRetryError, and the sandbox's above. */
export function isDoNotRetry(err: SerializedError | undefined | null): boolean {
  if (!err) return false;
  return (
    err.code === DO_NOT_RETRY_CODE ||
    err.name === 'DoNotRetryError' ||
    (err.code !== undefined && SAME_AGAIN_CODES.has(err.code))
  );
}
