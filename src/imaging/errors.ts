import { DoNotRetryError } from '../errors.js';

/**
 * A file that cannot be read as the format it claims: truncated, corrupt, or a variant jobd does not
 * support. Retrying cannot help, so it is a DoNotRetryError (matched by code across processes).
 */
export class ImageFormatError extends DoNotRetryError {
  readonly file: string;
  readonly problem: string;
  constructor(file: string, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, options);
    this.name = 'ImageFormatError';
    this.file = file;
    this.problem = problem;
  }
}

/** A kernel stopped because its AbortSignal fired (timeout, cancel, shutdown). */
export class KernelAbortedError extends Error {
  constructor(what: string, options?: { cause?: unknown }) {
    super(`${what} aborted`, options);
    this.name = 'AbortError';
  }
}
