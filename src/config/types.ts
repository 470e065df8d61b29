import type { DatasetSettings } from './datasets.js';
import type { ProgramSettings } from './programs.js';
import type { TabularSettings } from './tabular.js';
import type { HttpSettings } from './http.js';
import type {
  ExecutionMode,
  JobTypeDefinition,
  ResourceCapacity,
  RetryPolicy,
  ScheduleDefinition,
} from '../types.js';

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/**
 * Settings after loading (flag > JOBD_* env > file > defaults) and validation. Frozen; handed around.
 * Durations are milliseconds, sizes bytes. Relative paths in the file are resolved against the file's folder.
 */
export interface ResolvedConfig {
  /** 'embedded' (jobd runs its own MongoDB-compatible server) or a mongodb:// / mongodb+srv:// URI. */
  mongoUri: string;
  /** Database holding jobs, job_events, workers. */
  database: string;
  embedded: {
    host: string;
    /** Fixed so jobctl can reach the daemon's embedded database. */
    port: number;
    /** Where the embedded server keeps its data; null keeps it in memory (lost at exit). */
    dataDir: string | null;
    /**
     * A damaged data directory is refused unless this is set; with it, start-up keeps everything
     * before the damage and the whole damaged file beside it (docs/operations.md).
     */
    repair: boolean;
  };
  /** Base folder for jobd's own state. */
  dataDir: string;
  /** Per-job log files go here: <logDir>/<jobId>.log */
  logDir: string;
  pidFile: string;
  logLevel: LogLevel;
  /**
   * Folders job paths must stay inside, by name (absolute). A list in the settings names each folder
   * after its last segment, or `name=path`.
   */
  dataDirs: Record<string, string>;

  /**
   * What the dataset job types take from the settings (beside dataDirs). Absent in configs built by
   * hand: the types then use their own defaults.
   */
  data?: DataSettings;

  worker: {
    /** Jobs running at once on this daemon. */
    concurrency: number;
    /** Jobs claimed in one round trip. */
    claimBatchSize: number;
    leaseMs: number;
    heartbeatMs: number;
    pollMinMs: number;
    pollMaxMs: number;
    /** SIGTERM/SIGINT: how long running jobs may finish before they are killed and re-queued. */
    shutdownGraceMs: number;
    /** Between SIGTERM and SIGKILL of a child. */
    killGraceMs: number;
    /** At most one progress write per job per this many ms. */
    progressIntervalMs: number;
    /** Bytes of stdout/stderr kept on the job document. */
    logTailBytes: number;
    /**
     * Bytes of a job's output stored in the database (readable from any host), per job; past it the
     * stored log ends with a truncated marker. 0: none stored. Absent: the default (16 MiB).
     */
    logStoreBytes?: number;
    /** How often a running job's new output is shipped to the database. Absent: 250 ms. */
    logShipMs?: number;
    /** Failed attempts kept in job.errors. */
    errorHistory: number;
    /** Use change streams to wake up on new jobs where the server offers them. */
    changeStreams: boolean;
    /**
     * Start the child of an isolated job claimed ahead of a free slot while the running jobs finish
     * (at most `concurrency` such children, on top of the running ones).
     */
    prestartIsolated: boolean;
    /**
     * Isolated children are started by a small helper process of the daemon's instead of the daemon
     * itself, whose forks cost far more CPU (sandbox/spawnHelper.ts).
     */
    spawnHelper: boolean;
    /**
     * bin/jobd's V8 heap may grow to (1 + heapGrowthPercent/100) × what its last full collection found
     * live before it collects again; 0 leaves V8's own choice, up to 4× (worker/heapGrowth.ts).
     */
    heapGrowthPercent: number;
    /** Longest run of one lifecycle hook (onStart, onSuccess, onFailure, onRetry). */
    hookTimeoutMs: number;
    /** The queues this daemon claims from; null: every queue. */
    queues?: string[] | null;
  };

  /**
   * What this daemon can give jobs whose types declare needs (settings `resources`; unset parts are
   * the machine's CPUs and memory, and no GPUs). Absent in configs built by hand: the same defaults.
   */
  resources?: ResourceCapacity;

  /** Per-queue settings by queue name (queues not listed have no limit of their own). */
  queues?: Record<string, { concurrency?: number }>;

  maintenance: {
    rescueIntervalMs: number;
    /** Longest sleep of the scheduler (it wakes at the next fire time anyway): how soon it sees new schedules. */
    schedulePollMs: number;
    /** How often the releaser sweeps for missed releases (default 5 s). */
    releaseIntervalMs?: number;
  };

  /** Thresholds of `jobctl overview`'s health verdict. */
  monitor: {
    /** The oldest due job waited longer than this: warning. */
    oldestQueuedWarnMs: number;
    /** ... longer than this: critical. */
    oldestQueuedCriticalMs: number;
    /** Share of the jobs finished in the last hour that failed: warning at or above this. */
    failureRateWarn: number;
    /** ... critical at or above this. */
    failureRateCritical: number;
    /** The failure rate is judged only over at least this many finished jobs. */
    failureRateMinJobs: number;
    /** A running job whose progress (or start) is older than this is stale. */
    staleProgressMs: number;
  };

  /** How long finished jobs are kept, per final state (ms; null: for ever), applied by the daemons. */
  retention: {
    completed: number | null;
    failed: number | null;
    cancelled: number | null;
    /** How often a daemon applies it. */
    intervalMs: number;
  };

  /** The legacy datasets collection, its status updates and the dataset pipelines (absent: the defaults). */
  datasets?: DatasetSettings;

  /** A site's programs that external_program jobs run, by name (absent: none). */
  programs?: Record<string, ProgramSettings>;
  /** Named sources of api_ingestion and database_ingestion (absent: none). */
  tabular?: TabularSettings;
  /** jobd's HTTP API (src/http); absent or null: no server. */
  http?: HttpSettings | null;

  pool: {
    /** Recycle a pooled child after this many jobs. */
    maxJobsPerChild: number;
    /** Pooled children per kind that short jobs are queued on, several at a time (0: a child per job). */
    sharedChildren: number;
    /** Recycle a pooled child whose RSS passed this (bytes) after a job. */
    maxRssBytes: number;
    /** How often children are sampled with pidusage. */
    sampleIntervalMs: number;
  };

  defaults: {
    mode: ExecutionMode;
    timeoutMs: number;
    maxAttempts: number;
    priority: number;
    retry: RetryPolicy;
  };

  /** Registered job types by name (built-ins plus those in the settings file). */
  jobTypes: Record<string, JobTypeDefinition>;

  /** Schedules from the settings, upserted into the database when the daemon starts. */
  schedules: Record<string, ScheduleDefinition>;
}

/** The `data` section: file_extraction's limits, rclone, and dataset_conversion's converter. */
export interface DataSettings {
  /** file_extraction's limits when a job gives none. */
  extract: { maxBytes?: number; maxEntries?: number };
  /** The rclone config used when a job names none (an absolute path), and the program to run. */
  rclone: { config?: string; program?: string };
  /** dataset_conversion's command mode: `<program> [args...] <input> <output> <sensor> <k=v,...>`. */
  converter?: { program: string; args: string[]; progressRegex?: string };
}
