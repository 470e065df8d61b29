/**
 * jobd's logger: pino JSON lines on stdout, one object per line, which journald stores as-is.
 * Credentials never reach the log: URIs pass through redactUri() (fields named uri/mongoUri/url by the
 * redact censor, message strings by a hook), and password/secret/token fields are replaced outright.
 */
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { LogLevel } from './config/types.js';

export type { Logger } from 'pino';

const URI_KEYS = ['uri', 'mongoUri', 'url', 'connectionString'];
const SECRET_KEYS = ['password', 'pass', 'secret', 'token', 'apiKey'];

/** Matches the userinfo part of a connection string (user:pass@ or user@) right after the scheme. */
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^@/?#\s]*@/gi;
/** Secret-bearing query parameters: password=..., pwd=..., secret=..., token=... */
const SECRET_PARAM = /([?&;](?:password|pwd|pass|secret|token|authmechanismproperties)=)[^&#\s]*/gi;

/**
 * Hide credentials in a MongoDB (or any scheme://) connection string:
 *   mongodb://alice:s3cret@db1,db2/jobd?authSource=admin → mongodb://***@db1,db2/jobd?authSource=admin
 *   mongodb://db/?password=s3cret                        → mongodb://db/?password=***
 * Works on free text too (every URI inside it is redacted).
 */
export function redactUri(text: string): string {
  if (!text.includes('://') && !/(password|pwd|pass|secret|token)=/i.test(text)) return text;
  return text.replace(USERINFO, '$1***@').replace(SECRET_PARAM, '$1***');
}

function redactPaths(): string[] {
  const out: string[] = [];
  for (const k of [...URI_KEYS, ...SECRET_KEYS]) out.push(k, `*.${k}`, `*.*.${k}`);
  return out;
}

function censor(value: unknown, path: string[]): unknown {
  const key = path[path.length - 1] ?? '';
  if (SECRET_KEYS.includes(key)) return '***';
  return typeof value === 'string' ? redactUri(value) : value;
}

export interface LoggerSettings {
  level: LogLevel;
  /** Static fields on every line (e.g. worker id). */
  base?: Record<string, unknown>;
  name?: string;
}

/** Build the logger; `destination` is for tests (stdout otherwise). */
export function createLogger(settings: LoggerSettings, destination?: DestinationStream): Logger {
  const options: LoggerOptions = {
    level: settings.level,
    ...(settings.name ? { name: settings.name } : {}),
    base: { pid: process.pid, ...(settings.base ?? {}) },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: redactPaths(), censor },
    hooks: {
      // Message strings and interpolation arguments can carry URIs too (e.g. a driver error message).
      logMethod(args, method) {
        const cleaned = args.map((a) => (typeof a === 'string' ? redactUri(a) : a)) as typeof args;
        return method.apply(this, cleaned);
      },
    },
    serializers: {
      err: (err: unknown) => {
        const s = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
        for (const k of ['message', 'stack']) if (typeof s[k] === 'string') s[k] = redactUri(s[k] as string);
        return s;
      },
    },
  };
  return destination ? pino(options, destination) : pino(options, pino.destination({ dest: 1, sync: true }));
}
