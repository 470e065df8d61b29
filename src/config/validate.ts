/**
 * The shape of the settings a user may write (file, JOBD_* variables, flags — merged before this runs)
 * and how mistakes are reported: every message names the dotted key, the value given, what is allowed
 * and where the value came from, e.g.
 *
 *   settings: worker.concurrency = -3 is not allowed: must be an integer from 1 to 1024 (in /etc/jobd/settings.json)
 */
import { ConnectionString } from 'mongodb-connection-string-url';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { redact } from '../redact.js';
import { SCHEDULE_NAME } from '../schedules/spec.js';
import { datasetsSchema } from './datasets.js';
import { programsSchema } from './programs.js';
import { tabularSchema } from './tabular.js';
import { regexSetting } from './regexSetting.js';
import { httpSchema } from './http.js';
import { LOG_LEVELS } from './defaults.js';
import { DURATION_ALLOWED, parseDuration } from './duration.js';

const DAY_MS = 24 * 60 * 60_000;

function int(min: number, max: number, unit = ''): z.ZodNumber {
  const msg = `must be an integer from ${min} to ${max}${unit}`;
  return z.number({ error: msg }).int({ error: msg }).min(min, { error: msg }).max(max, { error: msg });
}

function num(min: number, max: number, what = 'a number'): z.ZodNumber {
  const msg = `must be ${what} from ${min} to ${max}`;
  return z.number({ error: msg }).min(min, { error: msg }).max(max, { error: msg });
}

function text(what: string): z.ZodString {
  return z.string({ error: `must be ${what}` }).min(1, { error: `must be ${what} (not empty)` });
}

function oneOf<const T extends readonly [string, ...string[]]>(
  values: T,
): z.ZodEnum<{ [K in T[number]]: K }> {
  return z.enum(values, { error: `must be one of ${values.join(', ')}` });
}

function bool(): z.ZodBoolean {
  return z.boolean({ error: 'must be true or false' });
}

/** MongoDB database names: no /\. "$*<>:|? or spaces, at most 63 bytes. */
const databaseName = z
  .string({ error: 'must be a database name (a string)' })
  .regex(/^[^/\\. "$*<>:|?\0]{1,63}$/, {
    error: 'must be a database name of 1 to 63 characters without / \\ . " $ * < > : | ? or spaces',
  });

const MONGO_URI_ALLOWED = 'must be "embedded" or a mongodb:// or mongodb+srv:// URI';
/** Parsed as the driver parses it, so a URI it would refuse stops jobd here, with the key named. */
const mongoUri = z.string({ error: MONGO_URI_ALLOWED }).superRefine((v, ctx) => {
  if (v === 'embedded') return;
  if (!/^mongodb(\+srv)?:\/\/[^\s]+$/.test(v)) {
    ctx.addIssue({ code: 'custom', message: MONGO_URI_ALLOWED });
    return;
  }
  try {
    new ConnectionString(v);
  } catch (err) {
    const why = redact(err instanceof Error ? err.message : String(err));
    const hint = /unescaped/i.test(why) ? '; percent-encode : / ? # [ ] @ in the user name and password' : '';
    ctx.addIssue({
      code: 'custom',
      message: `${MONGO_URI_ALLOWED} the MongoDB driver accepts (${why}${hint})`,
    });
  }
});

const retrySchema = z.strictObject({
  baseMs: int(1, DAY_MS, ' (ms)').optional(),
  factor: num(1, 100).optional(),
  capMs: int(1, 7 * DAY_MS, ' (ms)').optional(),
  jitter: num(0, 1).optional(),
});

/** A retention age ("30d"), or null to keep jobs of that state for ever. */
const retentionAge = z
  .string({ error: `${DURATION_ALLOWED}, or null to keep them` })
  .refine((v) => parseDuration(v) !== null, { error: `${DURATION_ALLOWED}, or null to keep them` })
  .nullable();

/** A child process for every type unless the type itself asks for inline (jobTypes.<name>.mode). */
const defaultModeSchema = oneOf(['pooled', 'isolated']);
const modeSchema = oneOf(['pooled', 'isolated', 'inline']);

export const JOB_TYPE_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;
const QUEUE_NAME_RULE = 'queue names start with a letter and use letters, digits, _ . : - (at most 100)';

/** Upper bounds of resource sizes: far above any machine, low enough to catch a unit mistake. */
const MAX_CPUS = 4096;
const MAX_MEMORY_MB = 1024 * 1024 * 1024;
const MAX_GPU_ID = 1023;

/** What one job of a type needs while it runs (jobTypes.<name>.needs). */
const needsSchema = z.strictObject(
  {
    cpus: int(0, MAX_CPUS).optional(),
    memoryMb: int(0, MAX_MEMORY_MB, ' (MiB)').optional(),
    gpus: int(0, MAX_GPU_ID + 1).optional(),
  },
  { error: 'must be an object: { "cpus": 2, "memoryMb": 8000, "gpus": 1 }' },
);

const GPU_IDS = `must be a list of GPU ids (integers from 0 to ${MAX_GPU_ID}), each once, e.g. [0, 1]`;

/** What this daemon can give its jobs (resources). */
const resourcesSchema = z.strictObject(
  {
    cpus: int(1, MAX_CPUS).optional(),
    memoryMb: int(1, MAX_MEMORY_MB, ' (MiB)').optional(),
    gpus: z
      .array(int(0, MAX_GPU_ID), { error: GPU_IDS })
      .refine((ids) => new Set(ids).size === ids.length, { error: GPU_IDS })
      .optional(),
  },
  { error: 'must be an object: { "cpus": 16, "memoryMb": 64000, "gpus": [0, 1] }' },
);

const jobTypeSchema = z.strictObject({
  handler: text(
    'a path to the handler module (relative to the settings file) or a package specifier',
  ).optional(),
  mode: modeSchema.optional(),
  timeoutMs: int(1, 7 * DAY_MS, ' (ms)').optional(),
  maxAttempts: int(1, 1000).optional(),
  priority: int(1, 100).optional(),
  concurrency: int(1, 1024).optional(),
  memoryLimitMb: int(1, 1024 * 1024, ' (MiB)').optional(),
  retry: retrySchema.optional(),
  queue: z.string({ error: QUEUE_NAME_RULE }).regex(JOB_TYPE_NAME, { error: QUEUE_NAME_RULE }).optional(),
  needs: needsSchema.optional(),
});

const queueSchema = z.strictObject({
  concurrency: int(1, 1024).optional(),
});

/** Data dir names: what job inputs name (`dataPath({ dirs: ['upload'] })`). */
const DATA_DIR_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

export const settingsSchema = z.strictObject({
  mongoUri: mongoUri.optional(),
  database: databaseName.optional(),
  embedded: z
    .strictObject({
      host: text('a host name or IP address').optional(),
      port: int(1, 65535).optional(),
      dataDir: text('a folder path, or null to keep the embedded database in memory').nullable().optional(),
      repair: bool().optional(),
    })
    .optional(),
  dataDir: text('a folder path').optional(),
  logDir: text('a folder path').optional(),
  pidFile: text('a file path').optional(),
  logLevel: oneOf(LOG_LEVELS as unknown as readonly [string, ...string[]]).optional(),
  dataDirs: z
    .union(
      [
        z.record(
          z.string().regex(DATA_DIR_NAME, {
            error: 'data dir names start with a letter and use letters, digits, _ - (at most 64)',
          }),
          text('a folder path'),
        ),
        z.array(text('a folder path')),
      ],
      {
        error:
          'must be an object of folder paths by name ({ "upload": "./var/data/upload" }), or a list of folder paths',
      },
    )
    .optional(),
  data: z
    .strictObject({
      extract: z
        .strictObject({
          maxBytes: int(1, Number.MAX_SAFE_INTEGER, ' (bytes)').optional(),
          maxEntries: int(1, 1_000_000_000).optional(),
        })
        .optional(),
      rclone: z
        .strictObject({
          config: text('a path to an rclone config file').optional(),
          program: text('the rclone program: a path, or a name found on PATH').optional(),
        })
        .optional(),
      converter: z
        .strictObject(
          {
            program: text('the converter program: a path, or a name found on PATH'),
            args: z
              .array(z.string({ error: 'must be a string' }), { error: 'must be a list of arguments' })
              .optional(),
            progressRegex: regexSetting((groups) =>
              groups < 1
                ? 'must be a regular expression whose first group is a percentage, e.g. "(\\d+)%"'
                : undefined,
            ).optional(),
          },
          { error: 'must be an object: { "program": "...", "args": [...], "progressRegex": "..." }' },
        )
        .optional(),
    })
    .optional(),
  worker: z
    .strictObject({
      concurrency: int(1, 1024).optional(),
      claimBatchSize: int(1, 1000).optional(),
      leaseMs: int(1_000, DAY_MS, ' (ms)').optional(),
      heartbeatMs: int(100, DAY_MS, ' (ms)').optional(),
      pollMinMs: int(1, 60_000, ' (ms)').optional(),
      pollMaxMs: int(1, 600_000, ' (ms)').optional(),
      shutdownGraceMs: int(0, DAY_MS, ' (ms)').optional(),
      killGraceMs: int(0, 600_000, ' (ms)').optional(),
      progressIntervalMs: int(0, 600_000, ' (ms)').optional(),
      logTailBytes: int(0, 16 * 1024 * 1024, ' (bytes)').optional(),
      logStoreBytes: int(0, 1024 * 1024 * 1024, ' (bytes)').optional(),
      logShipMs: int(10, 60_000, ' (ms)').optional(),
      errorHistory: int(0, 1000).optional(),
      changeStreams: bool().optional(),
      prestartIsolated: bool().optional(),
      spawnHelper: bool().optional(),
      heapGrowthPercent: int(0, 300, ' (percent; 0: V8 decides)').optional(),
      hookTimeoutMs: int(1, DAY_MS, ' (ms)').optional(),
      queues: z
        .array(z.string({ error: QUEUE_NAME_RULE }).regex(JOB_TYPE_NAME, { error: QUEUE_NAME_RULE }), {
          error: 'must be a list of queue names',
        })
        .min(1, { error: 'must name at least one queue (leave it out to run every queue)' })
        .optional(),
    })
    .optional(),
  resources: resourcesSchema.optional(),
  queues: z
    .record(z.string().regex(JOB_TYPE_NAME, { error: QUEUE_NAME_RULE }), queueSchema, {
      error: 'must be an object of queues by name',
    })
    .optional(),
  maintenance: z
    .strictObject({
      rescueIntervalMs: int(100, DAY_MS, ' (ms)').optional(),
      schedulePollMs: int(10, 600_000, ' (ms)').optional(),
      releaseIntervalMs: int(100, DAY_MS, ' (ms)').optional(),
    })
    .optional(),
  monitor: z
    .strictObject({
      oldestQueuedWarnMs: int(1_000, 30 * DAY_MS, ' (ms)').optional(),
      oldestQueuedCriticalMs: int(1_000, 30 * DAY_MS, ' (ms)').optional(),
      failureRateWarn: num(0, 1, 'a share').optional(),
      failureRateCritical: num(0, 1, 'a share').optional(),
      failureRateMinJobs: int(1, 1_000_000).optional(),
      staleProgressMs: int(1_000, 30 * DAY_MS, ' (ms)').optional(),
    })
    .optional(),
  retention: z
    .strictObject({
      completed: retentionAge.optional(),
      failed: retentionAge.optional(),
      cancelled: retentionAge.optional(),
      intervalMs: int(1_000, DAY_MS, ' (ms)').optional(),
    })
    .optional(),
  datasets: datasetsSchema.optional(),
  programs: programsSchema.optional(),
  tabular: tabularSchema.optional(),
  http: httpSchema.optional(),
  pool: z
    .strictObject({
      maxJobsPerChild: int(1, 10_000_000).optional(),
      sharedChildren: int(0, 1024).optional(),
      maxRssBytes: int(16 * 1024 * 1024, 1024 ** 4, ' (bytes)').optional(),
      sampleIntervalMs: int(50, 600_000, ' (ms)').optional(),
    })
    .optional(),
  defaults: z
    .strictObject({
      mode: defaultModeSchema.optional(),
      timeoutMs: int(1, 7 * DAY_MS, ' (ms)').optional(),
      maxAttempts: int(1, 1000).optional(),
      priority: int(1, 100).optional(),
      retry: retrySchema.optional(),
    })
    .optional(),
  jobTypes: z
    .record(
      z.string().regex(JOB_TYPE_NAME, {
        error: 'job type names start with a letter and use letters, digits, _ . : - (at most 100)',
      }),
      jobTypeSchema,
      { error: 'must be an object of job types by name' },
    )
    .optional(),
  // Each schedule's fields are checked in load.ts (scheduleProblems), which knows cron and timezones.
  schedules: z
    .record(
      z.string().regex(SCHEDULE_NAME, {
        error: 'schedule names start with a letter and use letters, digits, _ . : - (at most 100)',
      }),
      z.record(z.string(), z.unknown(), { error: 'must be an object (cron or everyMs, type, params, ...)' }),
      { error: 'must be an object of schedules by name' },
    )
    .optional(),
});

export type SettingsInput = z.infer<typeof settingsSchema>;

/** Where a value came from, for messages: "in /etc/jobd/settings.json", "from JOBD_CONCURRENCY", "from --concurrency". */
export type OriginOf = (path: readonly (string | number)[]) => string | undefined;

/** A value for a message: JSON, credentials hidden before it is cut short (a cut could split a URI). */
export function formatValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  s = redact(s);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

export function dotted(path: readonly PropertyKey[]): string {
  return path.map((p) => String(p)).join('.');
}

/** Values never shown in a message: the HTTP API's bearer tokens. */
const HIDDEN = '(hidden)';

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  if (path[0] === 'http' && path[1] === 'tokens') return HIDDEN;
  let cur: unknown = root;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p as string];
  }
  return cur;
}

/** Levenshtein distance; the key lists are short, so the plain O(n·m) table is fine. */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

export function didYouMean(given: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(given.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(given.length / 3)) ? best : undefined;
}

/** The keys the schema allows at an object path (for "did you mean" and listing what is allowed). */
function knownKeysAt(path: readonly PropertyKey[]): string[] {
  let schema: z.ZodType = settingsSchema;
  for (const p of path) {
    schema = unwrap(schema);
    if (schema instanceof z.ZodObject) {
      const next = (schema.shape as Record<string, z.ZodType>)[String(p)];
      if (!next) return [];
      schema = next;
    } else if (schema instanceof z.ZodRecord) {
      schema = schema.valueType as z.ZodType;
    } else {
      return [];
    }
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodObject ? Object.keys(schema.shape as Record<string, unknown>) : [];
}

function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
  // A section that may also be `false` (http): its keys are those of its object form.
  if (s instanceof z.ZodUnion) {
    const obj = (s.options as z.ZodType[]).find((o) => o instanceof z.ZodObject);
    if (obj) return obj;
  }
  return s;
}

export function settingsLine(
  path: string,
  value: unknown,
  allowed: string,
  origin: string | undefined,
): string {
  return `settings: ${path} = ${formatValue(value)} is not allowed: ${allowed}${origin ? ` (${origin})` : ''}`;
}

/** Validate the merged settings; throw one ConfigError listing every problem. */
export function validateSettings(raw: unknown, originOf: OriginOf): SettingsInput {
  const parsed = settingsSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lines: string[] = [];
  for (const issue of parsed.error.issues) {
    const path = issue.path as (string | number)[];
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(path);
      for (const key of issue.keys) {
        const full = [...path, key];
        const hint = didYouMean(key, known);
        const allowed = `unknown key${hint ? `; did you mean "${dotted([...path, hint])}"?` : ''}${
          known.length ? ` Known keys${path.length ? ` of ${dotted(path)}` : ''}: ${known.join(', ')}` : ''
        }`;
        lines.push(settingsLine(dotted(full), valueAt(raw, full), allowed, originOf(full)));
      }
      continue;
    }
    if (issue.code === 'invalid_key') {
      const key = issue.path[issue.path.length - 1];
      lines.push(
        `settings: ${dotted(path)} is not allowed as a name: ${issue.issues[0]?.message ?? issue.message}${
          originOf(path) ? ` (${originOf(path)})` : ''
        } [name given: ${formatValue(key)}]`,
      );
      continue;
    }
    lines.push(
      settingsLine(dotted(path) || '(top level)', valueAt(raw, path), issue.message, originOf(path)),
    );
  }
  throw new ConfigError(lines.join('\n'));
}
