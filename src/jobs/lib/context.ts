/** What a dataset core needs from the job that runs it. A job handler passes its own context through. */
export interface CoreContext {
  /** Aborted when the job must stop (cancel, timeout, shutdown): the core stops its programs. */
  signal: AbortSignal;
  progress(percent: number, message?: string): void;
  log(msg: string, extra?: Record<string, unknown>): void;
}
