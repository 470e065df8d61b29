/**
 * The `http` section: jobd's HTTP API (src/http). Absent or false: no server. Tokens are secrets, so no
 * message ever shows one (validate.ts hides every value under http.tokens).
 */
import { isIP } from 'node:net';
import { z } from 'zod';

export type TokenRole = 'read' | 'worker' | 'admin';

export interface HttpSettings {
  host: string;
  port: number;
  /**
   * Bearer tokens; `read` ones may only read, `worker` ones may also pull and settle jobs (the external
   * worker routes), `admin` ones may change anything.
   */
  tokens: { token: string; role: TokenRole }[];
  /** Reads need a token too (changing routes always do). */
  authReads: boolean;
  /** Largest request body; larger ones get 413. */
  bodyLimitBytes: number;
  /** Requests per client address and window on changing routes (null: no limit). */
  rateLimit: { max: number; windowMs: number } | null;
  /** Origins allowed by CORS; empty: CORS is off (browsers refuse cross-origin calls). */
  corsOrigins: string[];
  /** How long the job counts behind /metrics are cached. */
  metricsCacheMs: number;
  /** /api/events: a comment line this often keeps proxies from closing an idle stream. Absent: 15 s. */
  eventHeartbeatMs?: number;
  /** /api/events: output buffered for one client before the server stops reading changes for it. Absent: 1 MiB. */
  eventBufferBytes?: number;
  /** /api/events: how long a client may leave that buffer full before it is dropped. Absent: 30 s. */
  eventSlowClientMs?: number;
}

export const HTTP_DEFAULTS = {
  host: '127.0.0.1',
  port: 19000,
  authReads: false,
  bodyLimitBytes: 1024 * 1024,
  rateLimit: { max: 600, windowMs: 60_000 },
  metricsCacheMs: 5_000,
  eventHeartbeatMs: 15_000,
  eventBufferBytes: 1024 * 1024,
  eventSlowClientMs: 30_000,
} as const;

/** At least 16 characters: short tokens are guessable. */
export const MIN_TOKEN_LENGTH = 16;

const TOKEN_RULE = `must be a token of at least ${MIN_TOKEN_LENGTH} characters (letters, digits and - _ . ~ + / =)`;
const token = z
  .string({ error: TOKEN_RULE })
  .regex(new RegExp(`^[A-Za-z0-9\\-_.~+/=]{${MIN_TOKEN_LENGTH},512}$`), {
    error: TOKEN_RULE,
  });

function int(min: number, max: number, unit = ''): z.ZodNumber {
  const msg = `must be an integer from ${min} to ${max}${unit}`;
  return z.number({ error: msg }).int({ error: msg }).min(min, { error: msg }).max(max, { error: msg });
}

export const httpSchema = z.union(
  [
    z.literal(false),
    z.strictObject({
      enabled: z.boolean({ error: 'must be true or false' }).optional(),
      host: z.string({ error: 'must be a host name or IP address' }).min(1).optional(),
      port: int(0, 65535).optional(),
      tokens: z
        .array(
          z.union(
            [
              token,
              z.strictObject({
                token,
                role: z
                  .enum(['read', 'worker', 'admin'], { error: 'must be one of read, worker, admin' })
                  .optional(),
              }),
            ],
            {
              error: `must be a token (admin) or { "token": "...", "role": "read" | "worker" | "admin" }`,
            },
          ),
          { error: 'must be a list of tokens' },
        )
        .optional(),
      authReads: z.boolean({ error: 'must be true or false' }).optional(),
      bodyLimitBytes: int(1024, 1024 * 1024 * 1024, ' (bytes)').optional(),
      rateLimit: z
        .union(
          [
            z.literal(false),
            z.strictObject({
              max: int(1, 1_000_000).optional(),
              windowMs: int(100, 24 * 60 * 60_000, ' (ms)').optional(),
            }),
          ],
          { error: 'must be { "max": n, "windowMs": ms } or false' },
        )
        .optional(),
      corsOrigins: z
        .array(z.string({ error: 'must be an origin such as "https://ops.example.org"' }).min(1), {
          error: 'must be a list of origins',
        })
        .optional(),
      metricsCacheMs: int(0, 600_000, ' (ms)').optional(),
      eventHeartbeatMs: int(100, 600_000, ' (ms)').optional(),
      eventBufferBytes: int(1024, 1024 * 1024 * 1024, ' (bytes)').optional(),
      eventSlowClientMs: int(100, 3_600_000, ' (ms)').optional(),
    }),
  ],
  {
    error:
      'must be false (no HTTP API) or an object: { "host": "127.0.0.1", "port": 19000, "tokens": [...] }',
  },
);

export type HttpSettingsInput = z.infer<typeof httpSchema>;

/** Whether a host name only listens on this machine. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/**
 * The resolved section (null: off). Problems that need more than one key are pushed to `problems`:
 * a server on a non-loopback address without any token would let anyone on the network read jobs.
 */
export function resolveHttp(
  given: HttpSettingsInput | undefined,
  problem: (path: string, value: unknown, allowed: string) => void,
): HttpSettings | null {
  if (given === undefined || given === false || given.enabled === false) return null;
  const host = given.host ?? HTTP_DEFAULTS.host;
  const tokens = (given.tokens ?? []).map((t) =>
    typeof t === 'string'
      ? { token: t, role: 'admin' as const }
      : { token: t.token, role: t.role ?? 'admin' },
  );
  if (!isLoopback(host) && tokens.length === 0) {
    problem(
      'http.host',
      host,
      'a server reachable from other hosts needs http.tokens (bearer tokens), or keep it on 127.0.0.1',
    );
  }
  const rl = given.rateLimit;
  return {
    host,
    port: given.port ?? HTTP_DEFAULTS.port,
    tokens,
    authReads: given.authReads ?? HTTP_DEFAULTS.authReads,
    bodyLimitBytes: given.bodyLimitBytes ?? HTTP_DEFAULTS.bodyLimitBytes,
    rateLimit:
      rl === false
        ? null
        : {
            max: rl?.max ?? HTTP_DEFAULTS.rateLimit.max,
            windowMs: rl?.windowMs ?? HTTP_DEFAULTS.rateLimit.windowMs,
          },
    corsOrigins: [...(given.corsOrigins ?? [])],
    metricsCacheMs: given.metricsCacheMs ?? HTTP_DEFAULTS.metricsCacheMs,
    eventHeartbeatMs: given.eventHeartbeatMs ?? HTTP_DEFAULTS.eventHeartbeatMs,
    eventBufferBytes: given.eventBufferBytes ?? HTTP_DEFAULTS.eventBufferBytes,
    eventSlowClientMs: given.eventSlowClientMs ?? HTTP_DEFAULTS.eventSlowClientMs,
  };
}
