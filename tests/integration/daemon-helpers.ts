/** In-process daemon on the test's own database, with the built-in job types and test fixtures. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import type { ResolvedConfig } from '../../src/config/types.js';
import { builtinJobTypes } from '../../src/jobs/registry.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import type { JobId, JobTypeDefinition } from '../../src/types.js';
import type { DaemonEvents } from '../../src/worker/events.js';
import type { StoreFixture } from './store-helpers.js';

export const fixtureHandler = (name: string): string =>
  fileURLToPath(new URL(`../fixtures/jobs/${name}`, import.meta.url));

type Overrides = {
  pool?: Partial<ResolvedConfig['pool']>;
  worker?: Partial<ResolvedConfig['worker']>;
  jobTypes?: Record<string, Partial<JobTypeDefinition> & { handler: string }>;
  maintenance?: Partial<ResolvedConfig['maintenance']>;
  queues?: ResolvedConfig['queues'];
  dataDirs?: ResolvedConfig['dataDirs'];
  resources?: ResolvedConfig['resources'];
  programs?: ResolvedConfig['programs'];
};

export function testConfig(f: StoreFixture, o: Overrides = {}): ResolvedConfig {
  const dataDir = mkdtempSync(join(tmpdir(), 'jobd-daemon-test-'));
  const defaults: ResolvedConfig['defaults'] = {
    mode: 'pooled',
    timeoutMs: 30_000,
    maxAttempts: 3,
    priority: 5,
    retry: { baseMs: 50, factor: 2, capMs: 1_000, jitter: 0 },
  };
  const jobTypes: Record<string, JobTypeDefinition> = { ...builtinJobTypes(defaults) };
  for (const [name, t] of Object.entries(o.jobTypes ?? {})) {
    jobTypes[name] = { ...defaults, name, ...t, retry: { ...defaults.retry, ...t.retry } };
  }
  return {
    mongoUri: f.t.uri,
    database: f.t.dbName,
    embedded: { host: '127.0.0.1', port: 0, dataDir: null, repair: false },
    dataDir,
    logDir: join(dataDir, 'logs'),
    pidFile: join(dataDir, 'jobd.pid'),
    logLevel: 'warn',
    dataDirs: o.dataDirs ?? {},
    ...(o.queues ? { queues: o.queues } : {}),
    ...(o.resources ? { resources: o.resources } : {}),
    ...(o.programs ? { programs: o.programs } : {}),
    worker: {
      concurrency: 4,
      claimBatchSize: 10,
      // Long enough that a heartbeat starved for seconds (two test files and other work on 2 cores)
      // never loses a lease by accident; tests of lease loss set their own.
      leaseMs: 30_000,
      heartbeatMs: 200,
      pollMinMs: 20,
      pollMaxMs: 500,
      shutdownGraceMs: 5_000,
      killGraceMs: 500,
      progressIntervalMs: 100,
      logTailBytes: 1024,
      errorHistory: 10,
      changeStreams: true,
      prestartIsolated: true,
      spawnHelper: true,
      heapGrowthPercent: 50,
      hookTimeoutMs: 2_000,
      ...o.worker,
    },
    maintenance: { rescueIntervalMs: 1_000, schedulePollMs: 1_000, ...o.maintenance },
    monitor: {
      oldestQueuedWarnMs: 600_000,
      oldestQueuedCriticalMs: 3_600_000,
      failureRateWarn: 0.1,
      failureRateCritical: 0.5,
      failureRateMinJobs: 10,
      staleProgressMs: 1_800_000,
    },
    retention: { completed: null, failed: null, cancelled: null, intervalMs: 3_600_000 },
    pool: {
      maxJobsPerChild: 1000,
      sharedChildren: 2,
      maxRssBytes: 512 * 1024 * 1024,
      sampleIntervalMs: 500,
      ...o.pool,
    },
    defaults,
    jobTypes,
    schedules: {},
  };
}

/** random: the jitter source (default 0: delays exactly as the policy's upper bound). */
export async function startTestDaemon(
  f: StoreFixture,
  o: Overrides = {},
  random: () => number = () => 0,
): Promise<Daemon> {
  return startDaemon({
    config: testConfig(f, o),
    logger: pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' }),
    random,
  });
}

/** Collect payloads of `name` for the given job ids until every id has one. */
export function collect<K extends 'job:completed' | 'job:failed' | 'job:requeued' | 'job:lost'>(
  d: Daemon,
  name: K,
  ids: JobId[],
): Promise<Map<JobId, DaemonEvents[K]>> {
  const want = new Set(ids);
  const got = new Map<JobId, DaemonEvents[K]>();
  return new Promise((resolve) => {
    const off = d.on(name, (p) => {
      if (!want.has(p.jobId)) return;
      got.set(p.jobId, p);
      if (got.size === want.size) {
        off();
        resolve(got);
      }
    });
  });
}

/** Records every job id of `name` from now on; waitAll resolves once all given ids were seen. */
export function recorder(d: Daemon, name: 'job:completed' | 'job:failed' | 'job:requeued' | 'job:lost') {
  const seen = new Set<JobId>();
  let check: (() => void) | null = null;
  d.on(name, (p) => {
    seen.add(p.jobId);
    check?.();
  });
  return {
    seen,
    waitAll(ids: JobId[]): Promise<void> {
      return new Promise((resolve) => {
        check = () => {
          if (ids.every((id) => seen.has(id))) {
            check = null;
            resolve();
          }
        };
        check();
      });
    },
  };
}
