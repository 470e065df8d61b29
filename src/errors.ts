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

/** A state change the state machine does not allow (docs/state-machine.md). */
export class IllegalTransitionError extends JobdError {
  constructor(message: string) {
    super(message, 'JOBD_ILLEGAL_TRANSITION');
    this.name = 'IllegalTransitionError';
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

/** Throw from a handler to fail the job at once, without further attempts. */
export class DoNotRetryError extends JobdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, DO_NOT_RETRY_CODE, options);
    this.name = 'DoNotRetryError';
  }
}
export const DO_NOT_RETRY_CODE = 'JOBD_DO_NOT_RETRY';

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
export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return {
      name: err.name || 'Error',
      ...(code !== undefined ? { code: String(code) } : {}),
      message: err.message,
      ...(err.stack ? { stack: err.stack } : {}),
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

export function isDoNotRetry(err: SerializedError | undefined | null): boolean {
  return !!err && (err.code === DO_NOT_RETRY_CODE || err.name === 'DoNotRetryError');
}
