/**
 * jobd's logger: pino JSON lines on stdout, one object per line, which journald stores as-is.
 * Credentials never reach the log: every finished line passes through redact() (src/redact.ts) on its
 * way to the destination, so it does not matter which field, message, error, cause or binding carries
 * a connection string or a secret option.
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { LogLevel } from './config/types.js';
import { redact } from './redact.js';

export type { Logger } from 'pino';
export { redact, protectUri } from './redact.js';
/** The older name of redact(), kept for the callers that hide a URI before putting it in a message. */
export const redactUri = redact;

export interface LoggerSettings {
  level: LogLevel;
  /** Static fields on every line (e.g. worker id). */
  base?: Record<string, unknown>;
  name?: string;
}

/** A destination that redacts each line before writing it (flushing passes through). */
function redacting(dest: DestinationStream): DestinationStream {
  const d = dest as DestinationStream & {
    flush?: (cb?: (err?: Error) => void) => void;
    flushSync?: () => void;
  };
  return {
    write: (line: string) => d.write(redact(line)),
    ...(d.flush ? { flush: (cb?: (err?: Error) => void) => d.flush!(cb) } : {}),
    ...(d.flushSync ? { flushSync: () => d.flushSync!() } : {}),
  } as DestinationStream;
}

/** Build the logger; `destination` is for tests (stdout otherwise). */
export function createLogger(settings: LoggerSettings, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level: settings.level,
    ...(settings.name ? { name: settings.name } : {}),
    base: { pid: process.pid, ...(settings.base ?? {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return pino(options, redacting(destination ?? pino.destination({ dest: 1, sync: true })));
}
