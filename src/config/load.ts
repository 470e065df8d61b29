/**
 * Loads jobd's settings: defaults → settings file (--settings, or JOBD_SETTINGS) → JOBD_* environment
 * → command-line flags (a flag beats the environment, which beats the file, which beats the defaults).
 * The result is validated once and deeply frozen.
 *
 * Environment variables: every scalar setting has one, named after its dotted key in SCREAMING_SNAKE
 * case with `__` between levels:
 *   mongoUri → JOBD_MONGO_URI          worker.leaseMs → JOBD_WORKER__LEASE_MS
 *   database → JOBD_DATABASE           embedded.port → JOBD_EMBEDDED__PORT
 *   logLevel → JOBD_LOG_LEVEL          defaults.retry.baseMs → JOBD_DEFAULTS__RETRY__BASE_MS
 *   dataDir  → JOBD_DATA_DIR           dataDirs → JOBD_DATA_DIRS (comma-separated)
 * plus the short alias JOBD_CONCURRENCY for worker.concurrency (JOBD_WORKER__CONCURRENCY wins over it).
 * `JOBD_EMBEDDED__DATA_DIR=null` keeps the embedded database in memory. Job types are file-only.
 * A JOBD_ variable with `__` that names no setting is an error; other JOBD_ variables are left alone.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { protectUri } from '../redact.js';
import { builtinJobTypes } from '../jobs/registry.js';
import type { JobTypeDefinition, RetryPolicy, ScheduleDefinition } from '../types.js';
import { scheduleProblems, type ScheduleInput } from '../schedules/spec.js';
import {
  DEFAULT_DATA_DIR_NAME,
  DEFAULTS,
  EMBEDDED_DB_SUBDIR,
  LOG_SUBDIR,
  MIB,
  PID_FILE_NAME,
  defaultConcurrency,
} from './defaults.js';
import type { LogLevel, ResolvedConfig } from './types.js';
import {
  didYouMean,
  dotted,
  formatValue,
  settingsLine,
  settingsSchema,
  validateSettings,
  type SettingsInput,
} from './validate.js';

/** Values given on the command line (strings as commander hands them over). */
export interface FlagValues {
  mongoUri?: string;
  database?: string;
  logLevel?: string;
  concurrency?: string | number;
  dataDir?: string;
}

const FLAG_PATHS: Record<keyof FlagValues, { path: string[]; flag: string }> = {
  mongoUri: { path: ['mongoUri'], flag: '--mongo-uri' },
  database: { path: ['database'], flag: '--database' },
  logLevel: { path: ['logLevel'], flag: '--log-level' },
  concurrency: { path: ['worker', 'concurrency'], flag: '--concurrency' },
  dataDir: { path: ['dataDir'], flag: '--data-dir' },
};

export interface LoadOptions {
  /** --settings; when absent, JOBD_SETTINGS; when both are absent, defaults and environment only. */
  settingsPath?: string;
  flags?: FlagValues;
  /** Settings in the file's shape, applied over everything else (the library's loadSettings). */
  overrides?: Record<string, unknown>;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Built-in job types; the registry's by default. */
  builtins?: (
    defaults: ResolvedConfig['defaults'],
  ) => Record<string, JobTypeDefinition> | JobTypeDefinition[];
}

type Json = Record<string, unknown>;
type Kind = 'string' | 'number' | 'boolean' | 'list';
interface Leaf {
  path: string[];
  kind: Kind;
  nullable: boolean;
}

const SHORT_ALIASES: Record<string, string[]> = { JOBD_CONCURRENCY: ['worker', 'concurrency'] };
/** JOBD_ variables that are not settings and must not be reported as unknown. */
const NOT_SETTINGS = new Set(['JOBD_SETTINGS']);

function isPlainObject(v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function screaming(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

export function envName(path: readonly string[]): string {
  return `JOBD_${path.map(screaming).join('__')}`;
}

/** Every scalar setting the environment can set (job types excluded), found by walking the schema. */
function settingLeaves(): Leaf[] {
  const out: Leaf[] = [];
  const walk = (schema: z.ZodType, path: string[], nullable: boolean): void => {
    let s = schema;
    let isNull = nullable;
    for (;;) {
      if (s instanceof z.ZodOptional) s = s.unwrap() as z.ZodType;
      else if (s instanceof z.ZodNullable) {
        isNull = true;
        s = s.unwrap() as z.ZodType;
      } else break;
    }
    if (s instanceof z.ZodObject) {
      for (const [k, v] of Object.entries(s.shape as Record<string, z.ZodType>)) walk(v, [...path, k], false);
      return;
    }
    if (s instanceof z.ZodRecord) return;
    const kind: Kind =
      s instanceof z.ZodNumber
        ? 'number'
        : s instanceof z.ZodBoolean
          ? 'boolean'
          : s instanceof z.ZodArray
            ? 'list'
            : 'string';
    out.push({ path, kind, nullable: isNull });
  };
  walk(settingsSchema, [], false);
  return out;
}

let leavesCache: Leaf[] | undefined;
function leaves(): Leaf[] {
  return (leavesCache ??= settingLeaves());
}

/** Text → the type a setting wants; anything that does not parse stays text so validation names it. */
function coerce(raw: string, leaf: Leaf): unknown {
  const t = raw.trim();
  if (leaf.nullable && t === 'null') return null;
  switch (leaf.kind) {
    case 'number': {
      if (t !== '' && /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
      return raw;
    }
    case 'boolean': {
      const l = t.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(l)) return true;
      if (['false', '0', 'no', 'off'].includes(l)) return false;
      return raw;
    }
    case 'list':
      return t === '' ? [] : t.split(',').map((p) => p.trim());
    default:
      return raw;
  }
}

function setPath(target: Json, path: readonly string[], value: unknown): void {
  let cur = target;
  for (const p of path.slice(0, -1)) {
    if (!isPlainObject(cur[p])) cur[p] = {};
    cur = cur[p] as Json;
  }
  cur[path[path.length - 1]!] = value;
}

function getPath(root: unknown, path: readonly string[]): unknown {
  let cur = root;
  for (const p of path) {
    if (!isPlainObject(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

function deepMerge(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = isPlainObject(v) && isPlainObject(out[k]) ? deepMerge(out[k] as Json, v) : v;
  }
  return out;
}

function readSettingsFile(file: string): Json {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (err as Error).message;
    throw new ConfigError(`settings: cannot read settings file ${file}: ${why}`, { cause: err });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`settings: ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isPlainObject(data)) {
    throw new ConfigError(
      `settings: ${file} must hold a JSON object ({ ... }), found ${Array.isArray(data) ? 'an array' : typeof data}`,
    );
  }
  return data;
}

interface Layers {
  merged: Json;
  /** dotted path → "from JOBD_X" / "from --flag" (values from the file have the file's label). */
  origins: Map<string, string>;
  /** dotted paths set by env or flags: relative paths there resolve against the cwd. */
  cwdRelative: Set<string>;
  fileLabel?: string;
}

function envLayer(env: Record<string, string | undefined>, layers: Layers): void {
  const known = new Map<string, Leaf>();
  for (const leaf of leaves()) known.set(envName(leaf.path), leaf);
  const byPath = new Map<string, Leaf>();
  for (const leaf of leaves()) byPath.set(dotted(leaf.path), leaf);

  const envObj: Json = {};
  const problems: string[] = [];
  // Aliases first so the full name wins when both are set.
  const names = Object.keys(env)
    .filter((n) => n.startsWith('JOBD_') && env[n] !== undefined && !NOT_SETTINGS.has(n))
    .sort((a, b) => Number(a in SHORT_ALIASES ? 0 : 1) - Number(b in SHORT_ALIASES ? 0 : 1));
  for (const name of names) {
    const raw = env[name]!;
    const aliasPath = SHORT_ALIASES[name];
    const leaf = aliasPath ? byPath.get(dotted(aliasPath)) : known.get(name);
    if (!leaf) {
      if (name.includes('__')) {
        const hint = didYouMean(name, [...known.keys()]);
        problems.push(
          `settings: environment variable ${name} = ${formatValue(raw)} is not allowed: it names no setting${
            hint ? `; did you mean ${hint}?` : ''
          }`,
        );
      }
      continue;
    }
    setPath(envObj, leaf.path, coerce(raw, leaf));
    layers.origins.set(dotted(leaf.path), `from ${name}`);
    layers.cwdRelative.add(dotted(leaf.path));
  }
  if (problems.length) throw new ConfigError(problems.join('\n'));
  layers.merged = deepMerge(layers.merged, envObj);
}

function flagLayer(flags: FlagValues, layers: Layers): void {
  const byPath = new Map(leaves().map((l) => [dotted(l.path), l] as const));
  const flagObj: Json = {};
  for (const [key, value] of Object.entries(flags) as [keyof FlagValues, unknown][]) {
    if (value === undefined) continue;
    const { path, flag } = FLAG_PATHS[key];
    const leaf = byPath.get(dotted(path))!;
    setPath(flagObj, path, typeof value === 'string' ? coerce(value, leaf) : value);
    layers.origins.set(dotted(path), `from ${flag}`);
    layers.cwdRelative.add(dotted(path));
  }
  layers.merged = deepMerge(layers.merged, flagObj);
}

function overridesLayer(overrides: Json, layers: Layers): void {
  const mark = (value: unknown, path: string[]): void => {
    if (isPlainObject(value)) {
      for (const [k, v] of Object.entries(value)) mark(v, [...path, k]);
      return;
    }
    layers.origins.set(dotted(path), 'from overrides');
    layers.cwdRelative.add(dotted(path));
  };
  mark(overrides, []);
  layers.merged = deepMerge(layers.merged, overrides);
}

function originFinder(layers: Layers): (path: readonly (string | number)[]) => string | undefined {
  return (path) => {
    for (let n = path.length; n > 0; n--) {
      const hit = layers.origins.get(dotted(path.slice(0, n)));
      if (hit) return hit;
    }
    return layers.fileLabel;
  };
}

/** A handler is a file path (relative to the settings file's folder) or a package specifier. */
function resolveHandler(spec: string, baseDir: string, key: string, origin: string | undefined): string {
  const pathLike = /^(\.{1,2}[/\\]|[/\\]|[A-Za-z]:[/\\]|file:)/.test(spec);
  if (pathLike) {
    const file = spec.startsWith('file:') ? new URL(spec).pathname : resolve(baseDir, spec);
    if (!existsSync(file)) {
      throw new ConfigError(settingsLine(key, spec, `the handler file ${file} does not exist`, origin));
    }
    if (!statSync(file).isFile()) {
      throw new ConfigError(settingsLine(key, spec, `the handler ${file} is not a file`, origin));
    }
    return file;
  }
  const beside = resolve(baseDir, spec);
  if (existsSync(beside) && statSync(beside).isFile()) return beside;
  try {
    return createRequire(resolve(baseDir, 'settings.json')).resolve(spec);
  } catch {
    throw new ConfigError(
      settingsLine(
        key,
        spec,
        `the handler must be an existing file (looked for ${beside}) or an installed package; neither was found`,
        origin,
      ),
    );
  }
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

function toRecord(
  list: Record<string, JobTypeDefinition> | JobTypeDefinition[],
): Record<string, JobTypeDefinition> {
  if (!Array.isArray(list)) return { ...list };
  const out: Record<string, JobTypeDefinition> = {};
  for (const def of list) out[def.name] = def;
  return out;
}

export function loadConfig(options: LoadOptions = {}): ResolvedConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const settingsArg = options.settingsPath ?? (env.JOBD_SETTINGS || undefined);
  const settingsFile = settingsArg !== undefined ? resolve(cwd, settingsArg) : undefined;
  const fileDir = settingsFile ? dirname(settingsFile) : cwd;

  // Remember the connection string's secrets before anything can print it (even a message about it
  // being malformed), wherever it comes from.
  protectUri(options.flags?.mongoUri);
  protectUri(env.JOBD_MONGO_URI);
  protectUri(options.overrides?.mongoUri);
  const fileSettings = settingsFile ? readSettingsFile(settingsFile) : {};
  protectUri(fileSettings.mongoUri);
  const layers: Layers = {
    merged: fileSettings,
    origins: new Map(),
    cwdRelative: new Set(),
    ...(settingsFile ? { fileLabel: `in ${settingsFile}` } : {}),
  };
  envLayer(env, layers);
  flagLayer(options.flags ?? {}, layers);
  if (options.overrides) overridesLayer(options.overrides, layers);
  const originOf = originFinder(layers);
  const s: SettingsInput = validateSettings(layers.merged, originOf);

  const problems: string[] = [];
  const pathFor = (key: string, value: string): string =>
    isAbsolute(value) ? value : resolve(layers.cwdRelative.has(key) ? cwd : fileDir, value);

  const stateDirectory = env.STATE_DIRECTORY?.split(':')[0];
  const dataDir = s.dataDir
    ? pathFor('dataDir', s.dataDir)
    : stateDirectory && isAbsolute(stateDirectory)
      ? stateDirectory
      : resolve(fileDir, DEFAULT_DATA_DIR_NAME);

  const leaseMs = s.worker?.leaseMs ?? DEFAULTS.worker.leaseMs;
  const heartbeatMs = s.worker?.heartbeatMs ?? Math.max(100, Math.floor(leaseMs / 3));
  const rescueIntervalMs = s.maintenance?.rescueIntervalMs ?? Math.max(100, Math.floor(leaseMs / 2));
  const pollMinMs = s.worker?.pollMinMs ?? DEFAULTS.worker.pollMinMs;
  const pollMaxMs = s.worker?.pollMaxMs ?? Math.max(pollMinMs, DEFAULTS.worker.pollMaxMs);

  if (heartbeatMs >= leaseMs) {
    problems.push(
      settingsLine(
        'worker.heartbeatMs',
        heartbeatMs,
        `must be less than worker.leaseMs (${leaseMs})`,
        originOf(['worker', 'heartbeatMs']),
      ),
    );
  }
  if (rescueIntervalMs > leaseMs) {
    problems.push(
      settingsLine(
        'maintenance.rescueIntervalMs',
        rescueIntervalMs,
        `must be at most worker.leaseMs (${leaseMs}) so expired leases are rescued within two lease periods`,
        originOf(['maintenance', 'rescueIntervalMs']),
      ),
    );
  }
  if (pollMinMs > pollMaxMs) {
    problems.push(
      settingsLine(
        'worker.pollMaxMs',
        pollMaxMs,
        `must be at least worker.pollMinMs (${pollMinMs})`,
        originOf(['worker', 'pollMaxMs']),
      ),
    );
  }

  const retryOf = (base: RetryPolicy, over: Partial<RetryPolicy> | undefined, key: string): RetryPolicy => {
    const r = { ...base, ...stripUndefined(over ?? {}) };
    if (r.baseMs > r.capMs) {
      const path = `${key}.capMs`;
      problems.push(
        settingsLine(
          path,
          r.capMs,
          `must be at least ${key}.baseMs (${r.baseMs})`,
          originOf(path.split('.')),
        ),
      );
    }
    return r;
  };

  const defaults: ResolvedConfig['defaults'] = {
    mode: s.defaults?.mode ?? DEFAULTS.defaults.mode,
    timeoutMs: s.defaults?.timeoutMs ?? DEFAULTS.defaults.timeoutMs,
    maxAttempts: s.defaults?.maxAttempts ?? DEFAULTS.defaults.maxAttempts,
    priority: s.defaults?.priority ?? DEFAULTS.defaults.priority,
    retry: retryOf({ ...DEFAULTS.defaults.retry }, s.defaults?.retry, 'defaults.retry'),
  };

  const jobTypes = toRecord((options.builtins ?? builtinJobTypes)(defaults));
  for (const [name, t] of Object.entries(s.jobTypes ?? {})) {
    const base = jobTypes[name];
    const key = `jobTypes.${name}`;
    let handler = base?.handler;
    if (t.handler !== undefined) {
      try {
        handler = resolveHandler(
          t.handler,
          layers.cwdRelative.has(`${key}.handler`) ? cwd : fileDir,
          `${key}.handler`,
          originOf(['jobTypes', name, 'handler']),
        );
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
    }
    if (handler === undefined) {
      problems.push(
        `settings: ${key}.handler is missing: "${name}" is not a built-in job type, so it needs a handler module path${
          layers.fileLabel ? ` (${layers.fileLabel})` : ''
        }`,
      );
      continue;
    }
    const concurrency = t.concurrency ?? base?.concurrency;
    const memoryLimitBytes = t.memoryLimitMb !== undefined ? t.memoryLimitMb * MIB : base?.memoryLimitBytes;
    jobTypes[name] = {
      name,
      handler,
      mode: t.mode ?? base?.mode ?? defaults.mode,
      timeoutMs: t.timeoutMs ?? base?.timeoutMs ?? defaults.timeoutMs,
      maxAttempts: t.maxAttempts ?? base?.maxAttempts ?? defaults.maxAttempts,
      priority: t.priority ?? base?.priority ?? defaults.priority,
      ...(concurrency !== undefined ? { concurrency } : {}),
      ...(memoryLimitBytes !== undefined ? { memoryLimitBytes } : {}),
      retry: retryOf(base?.retry ?? defaults.retry, t.retry, `${key}.retry`),
    };
  }

  const schedules: Record<string, ScheduleDefinition> = {};
  for (const [name, input] of Object.entries(s.schedules ?? {})) {
    const key = `schedules.${name}`;
    const r = scheduleProblems(input as ScheduleInput, key);
    const where = originOf(['schedules', name]);
    for (const p of r.problems) problems.push(`settings: ${p}${where ? ` (${where})` : ''}`);
    if (r.def && !jobTypes[r.def.type]) {
      problems.push(
        settingsLine(
          `${key}.type`,
          r.def.type,
          `must be a job type these settings define: ${Object.keys(jobTypes).sort().join(', ')}`,
          where,
        ),
      );
    } else if (r.def) {
      schedules[name] = r.def;
    }
  }

  if (problems.length) throw new ConfigError(problems.join('\n'));

  const embeddedDataDir =
    s.embedded?.dataDir === null
      ? null
      : s.embedded?.dataDir !== undefined
        ? pathFor('embedded.dataDir', s.embedded.dataDir)
        : resolve(dataDir, EMBEDDED_DB_SUBDIR);

  const config: ResolvedConfig = {
    mongoUri: s.mongoUri ?? DEFAULTS.mongoUri,
    database: s.database ?? DEFAULTS.database,
    embedded: {
      host: s.embedded?.host ?? DEFAULTS.embedded.host,
      port: s.embedded?.port ?? DEFAULTS.embedded.port,
      dataDir: embeddedDataDir,
      repair: s.embedded?.repair ?? DEFAULTS.embedded.repair,
    },
    dataDir,
    logDir: s.logDir ? pathFor('logDir', s.logDir) : resolve(dataDir, LOG_SUBDIR),
    pidFile: s.pidFile ? pathFor('pidFile', s.pidFile) : resolve(dataDir, PID_FILE_NAME),
    logLevel: (s.logLevel as LogLevel | undefined) ?? DEFAULTS.logLevel,
    dataDirs: (s.dataDirs ?? [...DEFAULTS.dataDirs]).map((d) => pathFor('dataDirs', d)),
    worker: {
      concurrency: s.worker?.concurrency ?? defaultConcurrency(),
      claimBatchSize: s.worker?.claimBatchSize ?? DEFAULTS.worker.claimBatchSize,
      leaseMs,
      heartbeatMs,
      pollMinMs,
      pollMaxMs,
      shutdownGraceMs: s.worker?.shutdownGraceMs ?? DEFAULTS.worker.shutdownGraceMs,
      killGraceMs: s.worker?.killGraceMs ?? DEFAULTS.worker.killGraceMs,
      progressIntervalMs: s.worker?.progressIntervalMs ?? DEFAULTS.worker.progressIntervalMs,
      logTailBytes: s.worker?.logTailBytes ?? DEFAULTS.worker.logTailBytes,
      errorHistory: s.worker?.errorHistory ?? DEFAULTS.worker.errorHistory,
      changeStreams: s.worker?.changeStreams ?? DEFAULTS.worker.changeStreams,
      hookTimeoutMs: s.worker?.hookTimeoutMs ?? DEFAULTS.worker.hookTimeoutMs,
    },
    maintenance: {
      rescueIntervalMs,
      schedulePollMs: s.maintenance?.schedulePollMs ?? DEFAULTS.maintenance.schedulePollMs,
      releaseIntervalMs: s.maintenance?.releaseIntervalMs ?? 5_000,
    },
    pool: {
      maxJobsPerChild: s.pool?.maxJobsPerChild ?? DEFAULTS.pool.maxJobsPerChild,
      maxRssBytes: s.pool?.maxRssBytes ?? DEFAULTS.pool.maxRssBytes,
      sampleIntervalMs: s.pool?.sampleIntervalMs ?? DEFAULTS.pool.sampleIntervalMs,
    },
    defaults,
    jobTypes,
    schedules,
  };
  return deepFreeze(config);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The settings value at a dotted key of a loaded config (for `jobctl`/tests that print one). */
export function configValue(config: ResolvedConfig, key: string): unknown {
  return getPath(config, key.split('.'));
}

/** The connection string clients use: the embedded server's loopback address when mongoUri is 'embedded'. */
export function connectionUri(config: ResolvedConfig): string {
  return config.mongoUri === 'embedded'
    ? `mongodb://${config.embedded.host.includes(':') ? `[${config.embedded.host}]` : config.embedded.host}:${config.embedded.port}/?directConnection=true`
    : config.mongoUri;
}
