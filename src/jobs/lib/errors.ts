/**
 * Errors of the dataset toolkit. They cross the child-process boundary as plain objects, so the name
 * tells what went wrong and the code tells the daemon what to do: `JOBD_DO_NOT_RETRY` fails the job at
 * once (errors.ts `isDoNotRetry`), any other code is a failed attempt that is retried.
 */
import { DO_NOT_RETRY_CODE, JobdError } from '../../errors.js';

/** A failure of a dataset job, retryable or not; `details` carries structured facts (a problem list). */
export class DataJobError extends JobdError {
  readonly retryable: boolean;
  details?: unknown;
  constructor(
    name: string,
    message: string,
    opts: { retryable: boolean; code?: string; details?: unknown; cause?: unknown },
  ) {
    super(message, opts.retryable ? (opts.code ?? 'JOBD_DATA_FAILED') : DO_NOT_RETRY_CODE, {
      cause: opts.cause,
    });
    this.name = name;
    this.retryable = opts.retryable;
    if (opts.details !== undefined) this.details = opts.details;
  }
}

/** Bad input found when the job runs (a flag off the allow-list, a missing file). Never retried. */
export class DataInputError extends DataJobError {
  constructor(message: string, details?: unknown) {
    super('DataInputError', message, { retryable: false, details });
  }
}

/** A path outside the data dirs, or swapped for a symlink that leads out. Never retried. */
export class PathNotAllowedError extends DataJobError {
  constructor(message: string, details?: unknown) {
    super('PathNotAllowedError', message, { retryable: false, details });
  }
}

/** An archive entry that would escape the target, or a limit reached (a zip bomb). Never retried. */
export class ArchiveRefusedError extends DataJobError {
  constructor(message: string, details?: unknown) {
    super('ArchiveRefusedError', message, { retryable: false, details });
  }
}

/** The dataset failed validation; `details` lists every problem. Never retried. */
export class DatasetInvalidError extends DataJobError {
  constructor(message: string, details: unknown) {
    super('DatasetInvalidError', message, { retryable: false, details });
  }
}

/**
 * The program is not installed on this host. Retried: daemons on other hosts may have it, and an
 * operator can install it between attempts.
 */
export class ToolMissingError extends DataJobError {
  readonly tool: string;
  readonly debianPackage: string;
  constructor(tool: string, program: string, debianPackage: string) {
    super(
      'ToolMissingError',
      `${tool}: the program "${program}" is not installed on this host; install the Debian package "${debianPackage}" (apt-get install ${debianPackage})`,
      { retryable: true, code: 'JOBD_TOOL_MISSING' },
    );
    this.tool = tool;
    this.debianPackage = debianPackage;
  }
}

/** A program exited with a failure; `retryable` comes from the tool's exit-code table. */
export class ToolFailedError extends DataJobError {
  readonly tool: string;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderrTail: string;
  constructor(opts: {
    tool: string;
    message: string;
    retryable: boolean;
    exitCode: number | null;
    signal: string | null;
    stderrTail: string;
  }) {
    super('ToolFailedError', opts.message, { retryable: opts.retryable, code: 'JOBD_TOOL_FAILED' });
    this.tool = opts.tool;
    this.exitCode = opts.exitCode;
    this.signal = opts.signal;
    this.stderrTail = opts.stderrTail;
  }
}

/** The job was aborted (cancel, timeout, shutdown) and its program was stopped. */
export class ToolAbortedError extends DataJobError {
  constructor(tool: string, reason: string) {
    super('ToolAbortedError', `${tool}: stopped because the job was aborted (${reason})`, {
      retryable: true,
      code: 'JOBD_ABORTED',
    });
  }
}

/** Throws if the signal is aborted, naming the step. */
export function throwIfAborted(signal: AbortSignal, what: string): void {
  if (signal.aborted) throw new ToolAbortedError(what, abortReason(signal));
}

export function abortReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r.message;
  return r === undefined ? 'aborted' : String(r);
}

/** An error caused by the job's abort (a pipeline's AbortError, a stopped program) becomes ToolAbortedError. */
export function asAbort(err: unknown, signal: AbortSignal, what: string): unknown {
  if (!signal.aborted || err instanceof ToolAbortedError) return err;
  return new ToolAbortedError(what, abortReason(signal));
}
