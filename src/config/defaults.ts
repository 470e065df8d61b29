/**
 * Default settings: what jobd uses for every key that neither a flag, a JOBD_* variable nor the
 * settings file sets. Values that depend on others (heartbeat, rescue interval, paths under dataDir)
 * are derived in load.ts after the layers are merged, so overriding `worker.leaseMs` alone moves them too.
 */
import { availableParallelism, totalmem } from 'node:os';
import type { ResourceCapacity } from '../types.js';
import type { LogLevel } from './types.js';

export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export const KIB = 1024;
export const MIB = 1024 * KIB;

/** Sentinel for `mongoUri`: jobd runs its own MongoDB-compatible server. */
export const EMBEDDED_URI = 'embedded';

export const DEFAULTS = {
  mongoUri: EMBEDDED_URI,
  database: 'jobd',
  embedded: {
    host: '127.0.0.1',
    port: 27117,
    repair: false,
    // dataDir: derived, <dataDir>/db
  },
  // dataDir: derived: $STATE_DIRECTORY (systemd StateDirectory=) when set, else ./var next to the
  // settings file, else ./var in the working directory.
  // logDir: derived, <dataDir>/logs; pidFile: derived, <dataDir>/jobd.pid
  logLevel: 'info' as LogLevel,
  dataDirs: {} as Record<string, string>,
  worker: {
    // concurrency: derived, the CPU count
    claimBatchSize: 50,
    leaseMs: 30_000,
    // heartbeatMs: derived, leaseMs / 3
    pollMinMs: 50,
    pollMaxMs: 2_000,
    shutdownGraceMs: 30_000,
    killGraceMs: 5_000,
    progressIntervalMs: 1_000,
    logTailBytes: 4 * KIB,
    logStoreBytes: 16 * MIB,
    logShipMs: 250,
    errorHistory: 10,
    changeStreams: true,
    prestartIsolated: true,
    spawnHelper: true,
    heapGrowthPercent: 50,
    hookTimeoutMs: 10_000,
  },
  maintenance: {
    // rescueIntervalMs: derived, leaseMs / 2
    schedulePollMs: 1_000,
  },
  monitor: {
    oldestQueuedWarnMs: 10 * 60_000,
    oldestQueuedCriticalMs: 60 * 60_000,
    failureRateWarn: 0.1,
    failureRateCritical: 0.5,
    failureRateMinJobs: 10,
    staleProgressMs: 30 * 60_000,
  },
  // Nothing is deleted unless the settings say so.
  retention: {
    completed: null as string | null,
    failed: null as string | null,
    cancelled: null as string | null,
    intervalMs: 60 * 60_000,
  },
  pool: {
    // Measured (bench/cpu.ts, loaded machine): a pooled child's start-up costs ~0.7 s of CPU, as much
    // as ~3,700 no-op jobs in it, so recycling every 10,000 jobs was ~27% of a job's child CPU, and
    // every 50,000 it is ~7%. A child's RSS went from ~55 MB to 80-93 MB over its first 10,000 jobs and
    // stayed there to 15,000; maxRssBytes still recycles a child that keeps growing.
    maxJobsPerChild: 50_000,
    // Children per kind that short jobs share, several queued on each: one per core (see pool.ts).
    sharedChildren: Math.max(1, Math.min(1024, availableParallelism())),
    maxRssBytes: 512 * MIB,
    sampleIntervalMs: 1_000,
  },
  defaults: {
    mode: 'pooled' as const,
    timeoutMs: 60 * 60_000,
    maxAttempts: 3,
    priority: 5,
    retry: {
      baseMs: 1_000,
      factor: 2,
      capMs: 5 * 60_000,
      jitter: 0.2,
    },
  },
} as const;

export function defaultConcurrency(): number {
  return Math.max(1, Math.min(1024, availableParallelism()));
}

/** A daemon's resources where the settings give none: the machine's CPUs and memory, no GPUs. */
export function machineResources(): ResourceCapacity {
  return { cpus: availableParallelism(), memoryMb: Math.floor(totalmem() / MIB), gpus: [] };
}

export const DEFAULT_DATA_DIR_NAME = 'var';
export const EMBEDDED_DB_SUBDIR = 'db';
export const LOG_SUBDIR = 'logs';
export const PID_FILE_NAME = 'jobd.pid';
