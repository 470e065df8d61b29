/**
 * The `tabular` settings: named sources that api_ingestion and database_ingestion jobs read from. A job
 * names a source; the URL, headers and URIs (which carry credentials) stay in the settings, never in a
 * job's params, so they are not stored with the job nor shown by jobctl.
 *
 *   "tabular": { "sources": {
 *     "orders": { "kind": "http", "baseUrl": "https://api.example.org/v2/",
 *                 "headers": { "Authorization": "Bearer ..." }, "query": { "api_key": "..." },
 *                 "requestsPerSecond": 5, "timeoutMs": 30000 },
 *     "shop":   { "kind": "mongodb", "uri": "mongodb://reader:...@db1/shop", "database": "shop" } } }
 *
 * Every header and query value of an http source, and the password of a mongodb URI, is a secret: jobd
 * masks it wherever it would show (log lines, error messages).
 */
import { z } from 'zod';

export const SOURCE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export interface HttpSourceSettings {
  kind: 'http';
  /** Absolute http(s) URL without credentials; a job's `path` resolves against it. */
  baseUrl: string;
  headers: Record<string, string>;
  /** Query parameters added to every request (API keys). */
  query: Record<string, string>;
  /** The most requests a job sends per second (a job may ask for fewer). */
  requestsPerSecond?: number;
  /** Per-request timeout (ms); a job may ask for less. */
  timeoutMs?: number;
}

export interface MongoSourceSettings {
  kind: 'mongodb';
  uri: string;
  /** The database when a job names none (else the URI's). */
  database?: string;
}

export type TabularSource = HttpSourceSettings | MongoSourceSettings;

export interface TabularSettings {
  sources: Record<string, TabularSource>;
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

const httpUrl = z.string({ error: 'must be an http:// or https:// URL' }).superRefine((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute http:// or https:// URL' });
    return;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: 'must be an http:// or https:// URL' });
  } else if (u.username || u.password) {
    ctx.addIssue({
      code: 'custom',
      message: 'must not hold credentials (user:password@): put them in headers (Authorization)',
    });
  } else if (u.search || u.hash) {
    ctx.addIssue({ code: 'custom', message: 'must not hold a query or fragment: put parameters in query' });
  }
});

const stringMap = (what: string, key: z.ZodString) =>
  z.record(key, z.string({ error: `must be a string (${what} values are text)` }), {
    error: `must be an object of ${what} by name ({ "name": "value" })`,
  });

const httpSource = z.strictObject(
  {
    kind: z.literal('http'),
    baseUrl: httpUrl,
    headers: stringMap(
      'headers',
      z.string().regex(HEADER_NAME, { error: "header names are letters, digits and !#$%&'*+.^_`|~-" }),
    ).optional(),
    query: stringMap('query parameters', z.string().min(1, { error: 'must not be empty' })).optional(),
    requestsPerSecond: z
      .number({ error: 'must be a number of requests per second from 0.001 to 10000' })
      .min(0.001, { error: 'must be a number of requests per second from 0.001 to 10000' })
      .max(10_000, { error: 'must be a number of requests per second from 0.001 to 10000' })
      .optional(),
    timeoutMs: z
      .number({ error: 'must be an integer from 100 to 3600000 (ms)' })
      .int({ error: 'must be an integer from 100 to 3600000 (ms)' })
      .min(100, { error: 'must be an integer from 100 to 3600000 (ms)' })
      .max(3_600_000, { error: 'must be an integer from 100 to 3600000 (ms)' })
      .optional(),
  },
  { error: 'must be an object: { "kind": "http", "baseUrl": "https://...", "headers": { ... } }' },
);

const mongoSource = z.strictObject(
  {
    kind: z.literal('mongodb'),
    uri: z
      .string({ error: 'must be a mongodb:// or mongodb+srv:// URI' })
      .regex(/^mongodb(\+srv)?:\/\/\S+$/, { error: 'must be a mongodb:// or mongodb+srv:// URI' }),
    database: z
      .string({ error: 'must be a database name' })
      .regex(/^[^/\\. "$*<>:|?\0]{1,63}$/, {
        error: 'must be a database name of 1 to 63 characters without / \\ . " $ * < > : | ? or spaces',
      })
      .optional(),
  },
  { error: 'must be an object: { "kind": "mongodb", "uri": "mongodb://...", "database": "..." }' },
);

export const tabularSchema = z.strictObject(
  {
    sources: z
      .record(
        z.string().regex(SOURCE_NAME, {
          error: 'source names start with a letter and use letters, digits, _ - (at most 64)',
        }),
        z.discriminatedUnion('kind', [httpSource, mongoSource], {
          error: 'must be a source: { "kind": "http", ... } or { "kind": "mongodb", ... }',
        }),
        { error: 'must be an object of sources by name ({ "orders": { "kind": "http", ... } })' },
      )
      .optional(),
  },
  { error: 'must be an object: { "sources": { ... } }' },
);

export type TabularInput = z.infer<typeof tabularSchema>;

export function resolveTabular(given: TabularInput | undefined): TabularSettings {
  const sources: Record<string, TabularSource> = {};
  for (const [name, s] of Object.entries(given?.sources ?? {})) {
    sources[name] =
      s.kind === 'http'
        ? {
            kind: 'http',
            baseUrl: s.baseUrl,
            headers: { ...(s.headers ?? {}) },
            query: { ...(s.query ?? {}) },
            ...(s.requestsPerSecond !== undefined ? { requestsPerSecond: s.requestsPerSecond } : {}),
            ...(s.timeoutMs !== undefined ? { timeoutMs: s.timeoutMs } : {}),
          }
        : { kind: 'mongodb', uri: s.uri, ...(s.database !== undefined ? { database: s.database } : {}) };
  }
  return { sources };
}

/** The values never to show: header and query values, and the secrets of each URI. */
export function sourceSecrets(s: TabularSource): string[] {
  return s.kind === 'http' ? [...Object.values(s.headers), ...Object.values(s.query)] : [s.uri];
}

/**
 * Hands every secret of the (not yet validated) tabular settings to the redaction: header and query
 * values to `secret`, URIs to `uri`.
 */
export function protectSourceSecrets(
  raw: unknown,
  secret: (value: unknown) => void,
  uri: (value: unknown) => void,
): void {
  const sources = (raw as { sources?: unknown } | undefined)?.sources;
  if (!sources || typeof sources !== 'object') return;
  for (const s of Object.values(sources as Record<string, unknown>)) {
    if (!s || typeof s !== 'object') continue;
    const { headers, query, uri: u } = s as { headers?: unknown; query?: unknown; uri?: unknown };
    for (const map of [headers, query]) {
      if (map && typeof map === 'object') for (const v of Object.values(map)) secret(v);
    }
    uri(u);
  }
}
