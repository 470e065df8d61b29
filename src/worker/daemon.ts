/**
 * The jobd daemon: connects (starting the embedded server when mongoUri is 'embedded'), registers in
 * `workers`, and wires its parts together until stopped: the claim loop (woken by the change stream),
 * the slots, the executions, the settler that writes their outcomes, the lease keeper, and the
 * maintenance services. Nothing here exits the process.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createLogger, redactUri } from '../logging.js';
import type { ResolvedConfig } from '../config/types.js';
import { systemClock, type Clock } from '../clock.js';
import type { EmbeddedServer } from '../embeddedLoader.js';
import { Maintenance } from '../maintenance/maintenance.js';
import { createSandbox } from '../sandbox/index.js';
import type { Sandbox } from '../sandbox/types.js';
import {
  getSchedule,
  registerWorker,
  removeSchedule,
  resolveMongoUri,
  syncSettingsSchedules,
  type Store,
} from '../store/index.js';
import { RETENTION } from '../config/systemJobs.js';
import type { JobDoc, JobTypeDefinition } from '../types.js';
import { retentionPass } from '../maintenance/retention.js';
import { jobdVersion } from '../version.js';
import { ClaimLoop } from './claimLoop.js';
import { ClaimWatch } from './claimWatch.js';
import { connectDaemonStore, startEmbedded } from './database.js';
import { DbHealth } from './dbHealth.js';
import { prepareWorkDirs } from './dirs.js';
import { TypedEmitter, type DaemonEvents } from './events.js';
import { Executions } from './executions.js';
import { InlineRunner } from './inlineRunner.js';
import { LeaseKeeper } from './leaseKeeper.js';
import { LostLeases } from './lostLeases.js';
import { OutcomeReporter } from './outcomes.js';
import { Releases, emitReleaseEvents } from './releases.js';
import { Settler } from './settler.js';
import { Grace, shutdown } from './shutdown.js';
import { Slots } from './slots.js';
import { ResourceLedger, whyNeverFits } from './resources.js';
import { machineResources } from '../config/defaults.js';
import { Wakeup } from './wakeup.js';
import { QueueGate } from './queueGate.js';
import { queueMembership } from '../queueAdmin.js';

export interface StartDaemonOptions {
  config: ResolvedConfig;
  /** pino logger; a JSON-lines logger on stdout at config.logLevel when absent. */
  logger?: Logger;
  clock?: Clock;
  /** Injected sandbox (tests); created from config.pool when absent and closed at stop. */
  sandbox?: Sandbox;
  random?: () => number;
  /** Enable the driver's command monitoring on daemon.store.client (benchmarks). */
  monitorCommands?: boolean;
  /** How long to keep retrying the first connection. Default 60 s. */
  startupTimeoutMs?: number;
}

export interface DaemonStats {
  running: number;
  settling: number;
  claimed: number;
  completed: number;
  failed: number;
  retried: number;
  lost: number;
  requeued: number;
  suspended: number;
}

export interface Daemon {
  readonly workerId: string;
  readonly events: TypedEmitter<DaemonEvents>;
  readonly store: Store;
  /** Resolves once the daemon has stopped (after stop()). */
  readonly done: Promise<void>;
  on<K extends keyof DaemonEvents & string>(name: K, fn: (p: DaemonEvents[K]) => void): () => void;
  /** Stop claiming, let running jobs finish within graceMs, then abort and requeue the rest. */
  stop(opts?: { graceMs?: number }): Promise<void>;
  stats(): DaemonStats;
  /** Where the HTTP API listens (settings `http`), or null without one. */
  readonly httpUrl: string | null;
}

export async function startDaemon(opts: StartDaemonOptions): Promise<Daemon> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger({ level: config.logLevel, name: 'jobd' });
  const clock = opts.clock ?? systemClock;
  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  prepareWorkDirs(config);
  let embedded: EmbeddedServer | null = null;
  let uri: string;
  if (config.mongoUri === 'embedded') {
    embedded = await startEmbedded(config, logger);
    uri = embedded.uri;
  } else {
    uri = resolveMongoUri(config);
  }
  let store: Store;
  try {
    store = await connectDaemonStore(uri, config, logger, {
      appName: `jobd ${workerId}`,
      startupTimeoutMs: opts.startupTimeoutMs ?? 60_000,
      ...(opts.monitorCommands !== undefined ? { monitorCommands: opts.monitorCommands } : {}),
    });
  } catch (err) {
    await embedded?.close().catch(() => {});
    throw err;
  }
  let queueOf: Record<string, string>;
  try {
    // The queue a type's module declares (settings win): imports the modules, never runs a handler.
    queueOf = await queueMembership(config.jobTypes);
  } catch (err) {
    await store.close().catch(() => {});
    await embedded?.close().catch(() => {});
    throw err;
  }
  const d = new DaemonImpl(
    queueOf,
    config,
    logger.child({ worker: workerId }),
    clock,
    store,
    embedded,
    workerId,
    opts,
  );
  await d.start();
  return d;
}

class DaemonImpl implements Daemon {
  readonly events = new TypedEmitter<DaemonEvents>();
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly sandbox: Sandbox;
  private readonly ownsSandbox: boolean;
  private readonly health: DbHealth;
  private readonly wakeup = new Wakeup();
  private readonly watch: ClaimWatch;
  private readonly slots: Slots;
  private readonly executions: Executions;
  private readonly outcomes: OutcomeReporter;
  private readonly lostLeases: LostLeases;
  private readonly settler: Settler;
  private readonly releases: Releases;
  private readonly leaseKeeper: LeaseKeeper;
  private readonly maintenance: Maintenance;
  private readonly claimLoop: ClaimLoop;
  private readonly queues: QueueGate;
  /**
   * The job types in the queues worker.queues allows (all types when it is unset), minus those whose
   * needs exceed this daemon's capacity (unfitTypes).
   */
  private readonly claimTypes: string[];
  private readonly unfitTypes: { type: string; why: string }[] = [];
  private readonly resources: ResourceLedger;
  private readonly grace = new Grace();
  private stopping = false;
  /** The HTTP API (settings `http`), started last and closed first. */
  private http: { url: string; close(): Promise<void> } | null = null;
  private stopPromise: Promise<void> | null = null;

  constructor(
    queueOf: Record<string, string>,
    private readonly config: ResolvedConfig,
    private readonly logger: Logger,
    private readonly clock: Clock,
    readonly store: Store,
    private readonly embedded: EmbeddedServer | null,
    readonly workerId: string,
    opts: StartDaemonOptions,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    const random = opts.random ?? Math.random;
    const w = config.worker;
    const events = this.events;
    const health = (this.health = new DbHealth(events, logger));
    this.ownsSandbox = !opts.sandbox;
    this.sandbox =
      opts.sandbox ??
      createSandbox({
        maxJobsPerChild: config.pool.maxJobsPerChild,
        sharedChildren: config.pool.sharedChildren,
        maxRssBytes: config.pool.maxRssBytes,
        sampleIntervalMs: config.pool.sampleIntervalMs,
        killGraceMs: w.killGraceMs,
        // At most one child per running job: short jobs share a few children (pool.sharedChildren).
        maxChildren: w.concurrency,
        // Children of isolated jobs claimed ahead, started while the running jobs finish.
        prestart: w.prestartIsolated ? w.concurrency : 0,
        // Isolated children started by a small process of the daemon's: its forks are cheap.
        spawnHelper: w.spawnHelper,
        logger,
      });
    const releases = (this.releases = new Releases({
      store,
      clock,
      events,
      wakeup: this.wakeup,
      health,
      logger,
    }));
    this.settler = new Settler(store, {
      afterLanded: (landed) => releases.afterLanded(landed),
      owner: workerId,
      clock,
      errorHistory: w.errorHistory,
      maxBatch: Math.max(50, w.claimBatchSize),
      health,
      onRefused: (message, err, s) =>
        logger.error(
          {
            jobId: s?.jobId,
            err: { name: (err as Error)?.name, message: redactUri(String((err as Error)?.message ?? err)) },
          },
          message,
        ),
    });
    this.outcomes = new OutcomeReporter({ logger, events, clock, wakeup: this.wakeup });
    const allowed = w.queues ?? null;
    this.resources = new ResourceLedger(config.resources ?? machineResources());
    this.claimTypes = [];
    for (const t of Object.keys(config.jobTypes).sort()) {
      if (allowed !== null && !allowed.includes(queueOf[t] ?? t)) continue;
      const why = whyNeverFits(config.jobTypes[t]!.needs, this.resources.capacity);
      if (why) this.unfitTypes.push({ type: t, why });
      else this.claimTypes.push(t);
    }
    const limits: Record<string, number> = {};
    for (const [queue, q] of Object.entries(config.queues ?? {})) {
      if (q.concurrency !== undefined) limits[queue] = q.concurrency;
    }
    this.queues = new QueueGate({
      store,
      allowed,
      queueOf,
      limits,
      refreshMs: w.pollMaxMs,
      changeStreams: w.changeStreams,
      wakeup: this.wakeup,
      health,
      events,
      logger,
    });
    this.slots = new Slots({
      concurrency: w.concurrency,
      claimBatchSize: w.claimBatchSize,
      jobTypes: Object.fromEntries(this.claimTypes.map((t) => [t, config.jobTypes[t]!])),
      resources: this.resources,
      wakeup: this.wakeup,
      start: (job, allocation) => this.executions.start(job, allocation),
      ahead: (job, allocation) => this.executions.ahead(job, allocation),
      dropped: (job) => this.executions.dropped(job),
      queues: this.queues,
    });
    this.executions = new Executions({
      config,
      logger,
      store,
      sandbox: this.sandbox,
      inline: new InlineRunner(logger),
      clock,
      random,
      health,
      settler: this.settler,
      outcomes: this.outcomes,
      onFinished: (job, runMs) => this.slots.release(job, runMs),
      onLeaseLost: (leases) => this.lostLeases.handle(leases),
      runSystem: (def, job) => this.runSystemJob(def, job),
    });
    this.lostLeases = new LostLeases(this.slots, this.executions, this.outcomes);
    this.leaseKeeper = new LeaseKeeper(store, {
      workerId,
      intervalMs: w.heartbeatMs,
      leaseMs: w.leaseMs,
      clock,
      health,
      held: () => [
        ...this.executions.held(),
        ...this.slots.waiting().map((j) => ({ jobId: j._id, token: j.lease!.token })),
      ],
      onLost: (leases) => this.lostLeases.handle(leases),
      workerState: () => ({
        running: this.executions.runningIds(),
        state: this.stopping ? 'draining' : 'running',
        resourcesUsed: this.resources.used(),
      }),
    });
    this.maintenance = new Maintenance({
      store,
      config,
      clock,
      workerId,
      logger,
      random,
      onRescued: (r) => events.emit('rescue', r),
      onFired: (schedule, jobs) => {
        for (const j of jobs) {
          events.emit('schedule:fired', {
            schedule: schedule._id,
            fireAt: j.at,
            fireKey: j.fireKey,
            jobId: j.jobId,
            catchUp: j.catchUp,
          });
        }
      },
      onReleased: (r) => {
        if (r.released.length > 0) this.wakeup.wake();
        emitReleaseEvents(events, r);
      },
      onWorkflows: (w) => {
        for (const id of w.started) events.emit('workflow:submitted', { workflowId: id });
        for (const id of w.abandoned) {
          events.emit('workflow:cancelled', { workflowId: id, reason: 'abandoned: its submit stopped' });
        }
      },
      onError: (service, err) => health.error(service, err),
      onOk: (service) => health.ok(service),
    });
    this.watch = new ClaimWatch({ store, clock, wakeup: this.wakeup, health, events, logger });
    this.claimLoop = new ClaimLoop({
      store,
      clock,
      owner: workerId,
      leaseMs: w.leaseMs,
      claimBatchSize: w.claimBatchSize,
      pollMinMs: w.pollMinMs,
      pollMaxMs: w.pollMaxMs,
      wakeup: this.wakeup,
      health,
      slots: this.slots,
      watch: this.watch,
      history: this.settler,
    });
  }

  on<K extends keyof DaemonEvents & string>(name: K, fn: (p: DaemonEvents[K]) => void): () => void {
    return this.events.on(name, fn);
  }

  get httpUrl(): string | null {
    return this.http?.url ?? null;
  }

  stats(): DaemonStats {
    return {
      ...this.outcomes.counters,
      running: this.executions.runningCount,
      settling: this.executions.settlingCount,
    };
  }

  async start(): Promise<void> {
    const w = this.config.worker;
    await registerWorker(
      this.store,
      {
        _id: this.workerId,
        host: hostname(),
        pid: process.pid,
        version: jobdVersion(),
        startedAt: this.clock.now(),
        concurrency: w.concurrency,
        types: this.claimTypes,
        resources: { ...this.resources.capacity, used: this.resources.used() },
        unfitTypes: this.unfitTypes,
      },
      this.clock.now(),
    );
    for (const u of this.unfitTypes) {
      this.logger.warn(
        { type: u.type, why: u.why },
        `job type ${u.type} ${u.why}: this daemon never claims its jobs`,
      );
    }
    if (Object.keys(this.config.schedules).length) {
      const r = await syncSettingsSchedules(this.store, this.config.schedules, this.clock.now());
      if (r.added.length || r.updated.length) this.logger.info(r, 'schedules from the settings stored');
    }
    // Retention turned off in the settings: its schedule goes (a user schedule left out of the
    // settings stays, but this one is jobd's own).
    if (!this.config.schedules[RETENTION] && (await getSchedule(this.store, RETENTION))) {
      await removeSchedule(this.store, RETENTION);
      this.logger.info({ schedule: RETENTION }, 'retention is off in the settings: its schedule is removed');
    }
    await this.queues.start();
    // The first claim goes out ahead of the change stream's opening and the maintenance services'
    // first sweeps, so a daemon that starts with a queue waiting has its first jobs running sooner.
    // Until the stream is open the loop polls (pollMinMs), so no wake-up is missed in between.
    this.claimLoop.start((err) => this.logger.fatal({ err }, 'claim loop crashed'));
    if (w.changeStreams) this.watch.open();
    this.leaseKeeper.start();
    this.maintenance.start();
    if (this.config.http) {
      // Loaded only when configured: a daemon without the API does not load fastify.
      const { startHttpServer } = await import('../http/server.js');
      try {
        this.http = await startHttpServer({
          config: this.config,
          store: this.store,
          logger: this.logger,
          clock: this.clock,
          daemon: this,
        });
      } catch (err) {
        await this.stop({ graceMs: 0 });
        throw err;
      }
    }
    this.logger.info(
      {
        concurrency: w.concurrency,
        claimBatchSize: w.claimBatchSize,
        leaseMs: w.leaseMs,
        jobTypes: Object.keys(this.config.jobTypes),
        ...(w.queues ? { queues: w.queues } : {}),
      },
      'daemon started',
    );
    this.events.emit('daemon:started', { workerId: this.workerId, changeStreams: w.changeStreams });
  }

  /** A second stop() with a shorter graceMs cuts the grace period of the first. */
  stop(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.stopPromise) {
      if (opts.graceMs !== undefined) this.grace.cutAfter(opts.graceMs);
      return this.stopPromise;
    }
    this.stopPromise = this.doStop(opts.graceMs ?? this.config.worker.shutdownGraceMs);
    return this.stopPromise;
  }

  /** jobd's own jobs (src/config/systemJobs.ts), run here rather than in a child. */
  private async runSystemJob(def: JobTypeDefinition, job: JobDoc): Promise<unknown> {
    switch (def.system) {
      case 'retention': {
        const totals = await retentionPass(this.store, job.params, {
          logDir: this.config.logDir,
          now: this.clock.now(),
        });
        if (totals.jobs > 0)
          this.logger.info(
            { deleted: totals.jobs, events: totals.events },
            'retention: deleted finished jobs',
          );
        return totals;
      }
      default:
        throw new Error(`jobd cannot run its own job type ${def.name} (${String(def.system)})`);
    }
  }

  private async doStop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.logger.info({ running: this.executions.runningCount, graceMs }, 'daemon stopping');
    this.events.emit('daemon:stopping', { workerId: this.workerId, graceMs });
    await this.http
      ?.close()
      .catch((err: unknown) => this.logger.warn({ err }, 'http api did not close cleanly'));
    // Claiming stops with the claim loop; the paused set it last read stands until then.
    await this.queues.close();
    const requeued = await shutdown(
      {
        workerId: this.workerId,
        logger: this.logger,
        clock: this.clock,
        store: this.store,
        health: this.health,
        watch: this.watch,
        claimLoop: this.claimLoop,
        maintenance: this.maintenance,
        slots: this.slots,
        executions: this.executions,
        settler: this.settler,
        releases: this.releases,
        leaseKeeper: this.leaseKeeper,
        outcomes: this.outcomes,
        ownSandbox: this.ownsSandbox ? this.sandbox : null,
        embedded: this.embedded,
        drainMs: Math.max(10_000, this.config.worker.killGraceMs),
      },
      graceMs,
      this.grace,
    );
    this.logger.info({ ...this.stats(), requeued }, 'daemon stopped');
    this.events.emit('daemon:stopped', { workerId: this.workerId, requeued });
    this.resolveDone();
  }
}
