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
 *   dataDir  → JOBD_DATA_DIR           dataDirs → JOBD_DATA_DIRS (name=path,... or a JSON object)
 *   worker.queues → JOBD_WORKER__QUEUES (comma-separated)
 * plus the short alias JOBD_CONCURRENCY for worker.concurrency (JOBD_WORKER__CONCURRENCY wins over it).
 * `JOBD_EMBEDDED__DATA_DIR=null` keeps the embedded database in memory. Job types are file-only.
 * A JOBD_ variable with `__` that names no setting is an error; other JOBD_ variables are left alone.
 */
import { isAbsolute, dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { protectSecret, protectUri } from '../redact.js';
import { builtinJobTypes } from '../jobs/registry.js';
import type { JobTypeDefinition, ResourceCapacity, RetryPolicy, ScheduleDefinition } from '../types.js';
import { scheduleProblems, type ScheduleInput } from '../schedules/spec.js';
import {
  DEFAULT_DATA_DIR_NAME,
  DEFAULTS,
  EMBEDDED_DB_SUBDIR,
  LOG_SUBDIR,
  PID_FILE_NAME,
  defaultConcurrency,
  machineResources,
} from './defaults.js';
import { envLayer, flagLayer, type FlagValues } from './env.js';
import { resolveJobTypes, toRecord } from './jobTypes.js';
import {
  RETENTION,
  retentionEnabled,
  retentionJobType,
  retentionSchedule,
  SYSTEM_PREFIX,
} from './systemJobs.js';
import { parseDuration } from './duration.js';
import {
  deepFreeze,
  getPath,
  originFinder,
  overridesLayer,
  readSettingsFile,
  type Layers,
} from './layers.js';
import { resolveDatasets } from './datasets.js';
import { resolvePrograms } from './programs.js';
import { protectSourceSecrets, resolveTabular } from './tabular.js';
import { resolveHttp } from './http.js';
import type { DataSettings, LogLevel, ResolvedConfig } from './types.js';
import { dataDirsFromList } from '../jobs/dataDirsText.js';
import { settingsLine, validateSettings, type OriginOf, type SettingsInput } from './validate.js';

export { envName, type FlagValues } from './env.js';

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
  // Before validation, so that no message about a source can show its secrets.
  protectSourceSecrets(fileSettings.tabular, protectSecret, protectUri);
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

  const jobTypes = resolveJobTypes(
    toRecord((options.builtins ?? builtinJobTypes)(defaults)),
    s.jobTypes ?? {},
    { defaults, problems, retryOf, originOf, layers, cwd, fileDir },
  );

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
  const dataDirs = resolveDataDirs(s.dataDirs, pathFor, problems, originOf);
  for (const section of ['jobTypes', 'schedules'] as const) {
    for (const name of Object.keys(s[section] ?? {})) {
      if (!name.startsWith(SYSTEM_PREFIX)) continue;
      problems.push(
        settingsLine(
          `${section}.${name}`,
          name,
          `names starting with "${SYSTEM_PREFIX}" are jobd's own (its maintenance jobs); choose another name`,
          originOf([section, name]),
        ),
      );
    }
  }
  const retention: ResolvedConfig['retention'] = {
    completed: retentionMs(s.retention?.completed, DEFAULTS.retention.completed),
    failed: retentionMs(s.retention?.failed, DEFAULTS.retention.failed),
    cancelled: retentionMs(s.retention?.cancelled, DEFAULTS.retention.cancelled),
    intervalMs: s.retention?.intervalMs ?? DEFAULTS.retention.intervalMs,
  };
  // Every daemon can run a retention job (its ages ride in its params); the schedule exists while
  // the settings set an age.
  jobTypes[RETENTION] = retentionJobType(defaults);
  if (retentionEnabled(retention)) schedules[RETENTION] = retentionSchedule(retention);
  const data = resolveData(s.data, pathFor);
  const http = resolveHttp(s.http, (path, value, allowed) =>
    problems.push(settingsLine(path, value, allowed, originOf(path.split('.')))),
  );

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
    dataDirs,
    data,
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
      logStoreBytes: s.worker?.logStoreBytes ?? DEFAULTS.worker.logStoreBytes,
      logShipMs: s.worker?.logShipMs ?? DEFAULTS.worker.logShipMs,
      errorHistory: s.worker?.errorHistory ?? DEFAULTS.worker.errorHistory,
      changeStreams: s.worker?.changeStreams ?? DEFAULTS.worker.changeStreams,
      prestartIsolated: s.worker?.prestartIsolated ?? DEFAULTS.worker.prestartIsolated,
      spawnHelper: s.worker?.spawnHelper ?? DEFAULTS.worker.spawnHelper,
      heapGrowthPercent: s.worker?.heapGrowthPercent ?? DEFAULTS.worker.heapGrowthPercent,
      hookTimeoutMs: s.worker?.hookTimeoutMs ?? DEFAULTS.worker.hookTimeoutMs,
      queues: s.worker?.queues ? [...new Set(s.worker.queues)] : null,
    },
    resources: resolveResources(s.resources),
    queues: { ...(s.queues ?? {}) },
    maintenance: {
      rescueIntervalMs,
      schedulePollMs: s.maintenance?.schedulePollMs ?? DEFAULTS.maintenance.schedulePollMs,
      releaseIntervalMs: s.maintenance?.releaseIntervalMs ?? 5_000,
    },
    monitor: { ...DEFAULTS.monitor, ...stripUndefined(s.monitor ?? {}) },
    retention,
    datasets: resolveDatasets(s.datasets),
    programs: resolvePrograms(s.programs, pathFor),
    ...(s.tabular ? { tabular: resolveTabular(s.tabular) } : {}),
    http,
    pool: {
      maxJobsPerChild: s.pool?.maxJobsPerChild ?? DEFAULTS.pool.maxJobsPerChild,
      sharedChildren: s.pool?.sharedChildren ?? DEFAULTS.pool.sharedChildren,
      maxRssBytes: s.pool?.maxRssBytes ?? DEFAULTS.pool.maxRssBytes,
      sampleIntervalMs: s.pool?.sampleIntervalMs ?? DEFAULTS.pool.sampleIntervalMs,
    },
    defaults,
    jobTypes,
    schedules,
  };
  return deepFreeze(config);
}

/** The settings' resources, the machine's CPUs and memory where they give none (no GPUs unless listed). */
function resolveResources(given: SettingsInput['resources']): ResourceCapacity {
  const machine = machineResources();
  return {
    cpus: given?.cpus ?? machine.cpus,
    memoryMb: given?.memoryMb ?? machine.memoryMb,
    gpus: [...(given?.gpus ?? [])],
  };
}

/** dataDirs by name, absolute; a list names each folder after its last segment (or `name=path`). */
function resolveDataDirs(
  given: SettingsInput['dataDirs'],
  pathFor: (key: string, value: string) => string,
  problems: string[],
  originOf: OriginOf,
): Record<string, string> {
  if (given === undefined) return { ...DEFAULTS.dataDirs };
  const named = Array.isArray(given) ? dataDirsFromList(given) : given;
  if (Array.isArray(given) && Object.keys(named).length < given.length) {
    problems.push(
      settingsLine(
        'dataDirs',
        given,
        'two folders of the list have the same last segment, so they would share a name; give them names ({ "name": "path" }) or write "name=path"',
        originOf(['dataDirs']),
      ),
    );
  }
  return Object.fromEntries(
    Object.entries(named).map(([name, path]) => [
      name,
      pathFor(Array.isArray(given) ? 'dataDirs' : `dataDirs.${name}`, path),
    ]),
  );
}

/**
 * The data section: paths resolved like the others; a program given as a bare name (no slash) stays a
 * name, found on PATH when it runs.
 */
function resolveData(
  given: SettingsInput['data'],
  pathFor: (key: string, value: string) => string,
): DataSettings {
  const program = (key: string, value: string): string => (value.includes('/') ? pathFor(key, value) : value);
  const ex = given?.extract;
  const rc = given?.rclone;
  const cv = given?.converter;
  return {
    extract: {
      ...(ex?.maxBytes !== undefined ? { maxBytes: ex.maxBytes } : {}),
      ...(ex?.maxEntries !== undefined ? { maxEntries: ex.maxEntries } : {}),
    },
    rclone: {
      ...(rc?.config !== undefined ? { config: pathFor('data.rclone.config', rc.config) } : {}),
      ...(rc?.program !== undefined ? { program: program('data.rclone.program', rc.program) } : {}),
    },
    ...(cv
      ? {
          converter: {
            program: program('data.converter.program', cv.program),
            args: [...(cv.args ?? [])],
            ...(cv.progressRegex !== undefined ? { progressRegex: cv.progressRegex } : {}),
          },
        }
      : {}),
  };
}

function retentionMs(given: string | null | undefined, fallback: string | null): number | null {
  const v = given === undefined ? fallback : given;
  return v === null ? null : parseDuration(v);
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
