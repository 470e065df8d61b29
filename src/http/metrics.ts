/**
 * Prometheus metrics (prom-client). Job counts are gauges read from the database at scrape time
 * (cached for http.metricsCacheMs so frequent scrapes cost one aggregation); durations, waits,
 * attempts, failures and rescues are counted from the daemon's events, so they cover the jobs this
 * daemon ran since it started. Every series carries a `daemon` label.
 */
import { hostname } from 'node:os';
import client from 'prom-client';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { depthByTypeState, listWorkers, type Store } from '../store/index.js';
import type { JobId } from '../types.js';
import type { DaemonEvents, TypedEmitter } from '../worker/events.js';

const BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400];

export interface MetricsOptions {
  store: Store;
  config: ResolvedConfig;
  cacheMs: number;
  clock: Clock;
  daemon?: { workerId: string; events: TypedEmitter<DaemonEvents> };
}

export class Metrics {
  readonly registry = new client.Registry();
  private readonly offs: (() => void)[] = [];
  private cached: { at: number; rows: Awaited<ReturnType<typeof depthByTypeState>>; alive: number } | null =
    null;
  /** When each running job was claimed here, for its duration. */
  private readonly claimedAt = new Map<JobId, { at: number; type: string }>();

  constructor(private readonly o: MetricsOptions) {
    const r = this.registry;
    r.setDefaultLabels({ daemon: o.daemon?.workerId ?? `${hostname()}:${process.pid}:api` });
    client.collectDefaultMetrics({ register: r, prefix: 'jobd_process_' });
    const queueOf = (type: string): string => o.config.jobTypes[type]?.queue ?? type;
    new client.Gauge({
      name: 'jobd_jobs',
      help: 'Jobs in the database by state, type and queue',
      labelNames: ['state', 'type', 'queue'],
      registers: [r],
      collect: async function (this: client.Gauge) {
        this.reset();
        for (const row of (await self.read()).rows)
          this.set({ state: row.state, type: row.type, queue: queueOf(row.type) }, row.count);
      },
    });
    new client.Gauge({
      name: 'jobd_workers_alive',
      help: 'Daemons with a recent heartbeat',
      registers: [r],
      collect: async function (this: client.Gauge) {
        this.set((await self.read()).alive);
      },
    });
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- collect() callbacks get the metric as this
    const self = this;
    if (!o.daemon) return;
    const duration = new client.Histogram({
      name: 'jobd_job_duration_seconds',
      help: 'Run time of attempts on this daemon, from claim to outcome, by type and outcome',
      labelNames: ['type', 'outcome'],
      buckets: BUCKETS,
      registers: [r],
    });
    const wait = new client.Histogram({
      name: 'jobd_job_wait_seconds',
      help: 'Time from creation to claim of jobs claimed by this daemon, by type',
      labelNames: ['type'],
      buckets: BUCKETS,
      registers: [r],
    });
    const claimLatency = new client.Histogram({
      name: 'jobd_claim_latency_seconds',
      help: 'Time from a job being due (runAt) to its claim, by type',
      labelNames: ['type'],
      buckets: BUCKETS,
      registers: [r],
    });
    const attempts = new client.Counter({
      name: 'jobd_job_attempts_total',
      help: 'Attempts started on this daemon, by type',
      labelNames: ['type'],
      registers: [r],
    });
    const outcomes = new client.Counter({
      name: 'jobd_job_outcomes_total',
      help: 'Attempt outcomes on this daemon: completed, retrying, failed, lost, requeued, suspended',
      labelNames: ['type', 'outcome'],
      registers: [r],
    });
    const failures = new client.Counter({
      name: 'jobd_job_failures_total',
      help: 'Failed attempts on this daemon (retrying or failed for good), by type and error code',
      labelNames: ['type', 'code'],
      registers: [r],
    });
    const rescues = new client.Counter({
      name: 'jobd_lease_rescues_total',
      help: 'Jobs whose lease expired, rescued by this daemon, by what they became',
      labelNames: ['to'],
      registers: [r],
    });
    const ev = o.daemon.events;
    const now = (): number => o.clock.now().getTime();
    const finish = (jobId: JobId, type: string, outcome: string): void => {
      outcomes.inc({ type, outcome });
      const c = this.claimedAt.get(jobId);
      if (!c) return;
      this.claimedAt.delete(jobId);
      duration.observe({ type, outcome }, (now() - c.at) / 1000);
    };
    this.offs.push(
      ev.on('job:claimed', ({ jobId, type, job }) => {
        const at = now();
        this.claimedAt.set(jobId, { at, type });
        attempts.inc({ type });
        wait.observe({ type }, Math.max(0, at - job.createdAt.getTime()) / 1000);
        claimLatency.observe({ type }, Math.max(0, at - job.runAt.getTime()) / 1000);
      }),
      ev.on('job:completed', ({ jobId, type }) => finish(jobId, type, 'completed')),
      ev.on('job:retrying', ({ jobId, type, error }) => {
        failures.inc({ type, code: error.code ?? error.name });
        finish(jobId, type, 'retrying');
      }),
      ev.on('job:failed', ({ jobId, type, error }) => {
        failures.inc({ type, code: error.code ?? error.name });
        finish(jobId, type, 'failed');
      }),
      ev.on('job:lost', ({ jobId, type }) => finish(jobId, type, 'lost')),
      ev.on('job:requeued', ({ jobId, type }) => finish(jobId, type, 'requeued')),
      ev.on('job:suspended', ({ jobId, type }) => finish(jobId, type, 'suspended')),
      ev.on('rescue', ({ retrying, failed }) => {
        if (retrying.length) rescues.inc({ to: 'retrying' }, retrying.length);
        if (failed.length) rescues.inc({ to: 'failed' }, failed.length);
      }),
    );
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The database's counts, read at most once per cacheMs however many gauges ask. */
  private pending: Promise<NonNullable<Metrics['cached']>> | null = null;
  private read(): Promise<NonNullable<Metrics['cached']>> {
    const t = Date.now();
    if (this.cached && t - this.cached.at < this.o.cacheMs) return Promise.resolve(this.cached);
    this.pending ??= (async () => {
      try {
        const [rows, workers] = await Promise.all([
          depthByTypeState(this.o.store),
          listWorkers(this.o.store, { now: this.o.clock.now(), leaseMs: this.o.config.worker.leaseMs }),
        ]);
        const alive = workers.filter((w) => w.state !== 'stopped' && !w.dead).length;
        this.cached = { at: Date.now(), rows, alive };
        return this.cached;
      } finally {
        this.pending = null;
      }
    })();
    return this.pending;
  }

  close(): void {
    for (const off of this.offs) off();
    this.claimedAt.clear();
  }
}
