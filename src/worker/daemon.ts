/**
 * The jobd daemon: connects (starting the embedded server when mongoUri is 'embedded'), registers in
 * `workers`, and runs four things until stopped: the claim loop, the executions, the lease keeper
 * and the rescuer. Outcomes are written by the Settler. Nothing here exits the process.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { createLogger } from '../logging.js';
import type { ResolvedConfig } from '../config/types.js';
import { systemClock, type Clock } from '../clock.js';
import { createSandbox } from '../sandbox/index.js';
import type { Sandbox } from '../sandbox/types.js';
import {
  markWorkerStopped,
  progressIfRunning,
  registerWorker,
  resolveMongoUri,
  settlementTarget,
  watchClaimable,
  type Settlement,
  type Store,
  type Watcher,
} from '../store/index.js';
import { Rescuer } from '../maintenance/rescuer.js';
import type { JobDoc, JobId } from '../types.js';
import { ClaimLoop, type TypeLimits } from './claimLoop.js';
import { connectDaemonStore, startEmbedded, type EmbeddedHandle } from './database.js';
import { DbHealth } from './dbHealth.js';
import { TypedEmitter, type DaemonEvents } from './events.js';
import { executeJob, type Execution } from './executor.js';
import { LeaseKeeper } from './leaseKeeper.js';
import { Settler } from './settler.js';
import { Wakeup } from './wakeup.js';

/**
 * Claiming ahead: when jobs are short, the claim loop may take up to one batch more than the free
 * slots, so claims (and their events) go out in batches even at low concurrency. A job claimed ahead
 * holds its lease (renewed with the others) while it waits, so the queue is sized to wait about this
 * long on average, from the recent run time of jobs; long jobs are never claimed ahead.
 */
const CLAIM_AHEAD_WAIT_MS = 50;
/** Weight of the newest run time in its moving average. */
const RUN_MS_WEIGHT = 0.1;

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
}

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export async function startDaemon(opts: StartDaemonOptions): Promise<Daemon> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger({ level: config.logLevel, name: 'jobd' });
  const clock = opts.clock ?? systemClock;
  const workerId = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  let embedded: EmbeddedHandle | null = null;
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
  const d = new DaemonImpl(
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
  private readonly executions = new Map<JobId, Execution>();
  private readonly settling = new Map<JobId, Execution>();
  /** Jobs held per type: running plus claimed ahead (so a job claimed ahead never waits for its type's slot). */
  private readonly perType = new Map<string, number>();
  /** Claimed ahead, in claim order, waiting for a free slot. */
  private ready: JobDoc[] = [];
  /** Moving average of a job's run time on this daemon (ms); undefined until one finished. */
  private avgRunMs: number | undefined;
  private readonly settler: Settler;
  private readonly leaseKeeper: LeaseKeeper;
  private readonly rescuer: Rescuer;
  private readonly claimLoop: ClaimLoop;
  private readonly random: () => number;
  private watcher: Watcher | null = null;
  private watchHealthy = false;
  private watchRetry: NodeJS.Timeout | null = null;
  private loopDone: Promise<void> = Promise.resolve();
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private executionsIdle: (() => void)[] = [];
  private readonly counters: DaemonStats = {
    running: 0,
    settling: 0,
    claimed: 0,
    completed: 0,
    failed: 0,
    retried: 0,
    lost: 0,
    requeued: 0,
  };

  constructor(
    private readonly config: ResolvedConfig,
    private readonly logger: Logger,
    private readonly clock: Clock,
    readonly store: Store,
    private readonly embedded: EmbeddedHandle | null,
    readonly workerId: string,
    opts: StartDaemonOptions,
  ) {
    this.done = new Promise((r) => (this.resolveDone = r));
    this.random = opts.random ?? Math.random;
    this.health = new DbHealth(this.events, logger);
    this.ownsSandbox = !opts.sandbox;
    this.sandbox =
      opts.sandbox ??
      createSandbox({
        maxJobsPerChild: config.pool.maxJobsPerChild,
        maxRssBytes: config.pool.maxRssBytes,
        sampleIntervalMs: config.pool.sampleIntervalMs,
        killGraceMs: config.worker.killGraceMs,
        logger,
      });
    const w = config.worker;
    this.settler = new Settler(store, {
      owner: workerId,
      clock,
      errorHistory: w.errorHistory,
      maxBatch: Math.max(50, w.claimBatchSize),
      health: this.health,
    });
    this.leaseKeeper = new LeaseKeeper(store, {
      workerId,
      intervalMs: w.heartbeatMs,
      leaseMs: w.leaseMs,
      clock,
      health: this.health,
      held: () => [
        ...[...this.executions.values(), ...this.settling.values()].map((e) => ({
          jobId: e.job._id,
          token: e.token,
        })),
        ...this.ready.map((j) => ({ jobId: j._id, token: j.lease!.token })),
      ],
      onLost: (ids) => this.leasesLost(ids),
      workerState: () => ({
        running: [...this.executions.keys()],
        state: this.stopping ? 'draining' : 'running',
      }),
    });
    this.rescuer = new Rescuer(store, {
      intervalMs: config.maintenance.rescueIntervalMs,
      clock,
      errorHistory: w.errorHistory,
      policyFor: (type) => config.jobTypes[type]?.retry ?? config.defaults.retry,
      maxAttemptsFor: (type) => config.jobTypes[type]?.maxAttempts ?? config.defaults.maxAttempts,
      rescuerId: workerId,
      logger,
      random: this.random,
      onRescued: (r) => this.events.emit('rescue', r),
      onError: (err) => this.health.error('rescue', err),
      onOk: () => this.health.ok('rescue'),
    });
    this.claimLoop = new ClaimLoop({
      store,
      clock,
      owner: workerId,
      leaseMs: w.leaseMs,
      claimBatchSize: w.claimBatchSize,
      concurrency: w.concurrency,
      pollMinMs: w.pollMinMs,
      pollMaxMs: w.pollMaxMs,
      wakeup: this.wakeup,
      health: this.health,
      freeSlots: () => w.concurrency + this.prefetch() - this.executions.size - this.ready.length,
      prefetch: () => this.prefetch(),
      typeLimits: () => this.typeLimits(),
      watching: () => this.watchHealthy,
      stopping: () => this.stopping,
      start: (job) => this.accept(job),
      onUnwrittenEvents: (events) => this.settler.addEvents(events),
    });
  }

  on<K extends keyof DaemonEvents & string>(name: K, fn: (p: DaemonEvents[K]) => void): () => void {
    return this.events.on(name, fn);
  }

  stats(): DaemonStats {
    return { ...this.counters, running: this.executions.size, settling: this.settling.size };
  }

  async start(): Promise<void> {
    const w = this.config.worker;
    await registerWorker(
      this.store,
      {
        _id: this.workerId,
        host: hostname(),
        pid: process.pid,
        version: packageVersion(),
        startedAt: this.clock.now(),
        concurrency: w.concurrency,
      },
      this.clock.now(),
    );
    if (w.changeStreams) this.openWatcher();
    this.leaseKeeper.start();
    this.rescuer.start();
    this.loopDone = this.claimLoop.run().catch((err: unknown) => {
      this.logger.fatal({ err }, 'claim loop crashed');
    });
    this.logger.info(
      {
        concurrency: w.concurrency,
        claimBatchSize: w.claimBatchSize,
        leaseMs: w.leaseMs,
        jobTypes: Object.keys(this.config.jobTypes),
      },
      'daemon started',
    );
    this.events.emit('daemon:started', { workerId: this.workerId, changeStreams: w.changeStreams });
  }

  private openWatcher(reopening = false): void {
    if (this.stopping) return;
    // Jobs enqueued while no stream was open raised no event: look once now.
    if (reopening) this.wakeup.wake();
    this.watcher = watchClaimable(this.store, {
      onChange: ({ runAt }) => {
        this.watchHealthy = true;
        const now = this.clock.now().getTime();
        if (!runAt || runAt.getTime() <= now) this.wakeup.wake();
        else this.wakeup.at(runAt.getTime(), now);
      },
      onReady: () => {
        // Jobs enqueued while the stream was being opened raised no event.
        this.wakeup.wake();
        this.events.emit('watch:ready', {});
      },
      onError: (err, unsupported) => {
        this.watchHealthy = false;
        this.watcher = null;
        if (unsupported) {
          this.logger.warn({ message: (err as Error)?.message }, 'change streams unavailable; polling');
          this.events.emit('watch:fallback', { reason: String((err as Error)?.message ?? err) });
          return;
        }
        this.health.error('watch', err);
        // One reopen pending at a time, whatever the stream reported.
        if (!this.stopping && !this.watchRetry) {
          this.watchRetry = setTimeout(() => {
            this.watchRetry = null;
            this.openWatcher(true);
          }, 1_000);
        }
      },
    });
    // Optimistic until it errors: a healthy stream lets the claim loop poll only as a safety net.
    this.watchHealthy = true;
  }

  private typeLimits(): TypeLimits {
    const limits: TypeLimits = { exclude: [], slots: {} };
    for (const [name, def] of Object.entries(this.config.jobTypes)) {
      if (def.concurrency === undefined) continue;
      const free = def.concurrency - (this.perType.get(name) ?? 0);
      if (free <= 0) limits.exclude.push(name);
      else limits.slots[name] = free;
    }
    return limits;
  }

  /** How many jobs may be claimed ahead of a free slot now. */
  private prefetch(): number {
    const avg = this.avgRunMs;
    if (avg === undefined || this.stopping) return 0;
    const w = this.config.worker;
    return Math.min(
      w.claimBatchSize,
      Math.floor((w.concurrency * CLAIM_AHEAD_WAIT_MS) / Math.max(avg, 0.01)),
    );
  }

  /** A claimed job: run it now if a slot is free, else hold it until one is. */
  private accept(job: JobDoc): void {
    this.perType.set(job.type, (this.perType.get(job.type) ?? 0) + 1);
    if (this.executions.size < this.config.worker.concurrency) this.startJob(job);
    else this.ready.push(job);
  }

  private startJob(job: JobDoc): void {
    const ex: Execution = {
      job,
      token: job.lease!.token,
      controller: new AbortController(),
      abortCause: null,
    };
    this.executions.set(job._id, ex);
    const t0 = performance.now();
    this.counters.claimed++;
    this.logger.debug({ jobId: job._id, type: job.type, attempt: job.attempts }, 'job claimed');
    this.events.emit('job:claimed', { jobId: job._id, type: job.type, attempt: job.attempts, job });
    void executeJob(ex, {
      config: this.config,
      sandbox: this.sandbox,
      now: () => this.clock.now(),
      random: this.random,
      onProgress: (percent, message) => this.progress(ex, percent, message),
    })
      .catch((err: unknown) => {
        this.logger.error({ jobId: job._id, err }, 'executor failed');
        return null;
      })
      .then((settlement) => {
        const ms = performance.now() - t0;
        this.avgRunMs =
          this.avgRunMs === undefined ? ms : this.avgRunMs + (ms - this.avgRunMs) * RUN_MS_WEIGHT;
        this.finishExecution(ex, settlement);
      });
  }

  private progress(ex: Execution, percent: number, message?: string): void {
    progressIfRunning(this.store, {
      jobId: ex.job._id,
      token: ex.token,
      percent,
      ...(message !== undefined ? { message } : {}),
      now: this.clock.now(),
    }).then(
      (held) => {
        if (!held) this.leasesLost([ex.job._id]);
      },
      (err: unknown) => this.health.error('progress', err),
    );
  }

  private finishExecution(ex: Execution, settlement: Settlement | null): void {
    const { job } = ex;
    this.executions.delete(job._id);
    this.perType.set(job.type, (this.perType.get(job.type) ?? 1) - 1);
    const next = this.stopping ? undefined : this.ready.shift();
    if (next) this.startJob(next);
    if (this.claimLoop.blockedBySlots) this.wakeup.wake();
    if (settlement === null) {
      this.jobLost(ex, 'running');
    } else {
      this.settling.set(job._id, ex);
      this.settler.add(settlement, (landed) => {
        this.settling.delete(job._id);
        if (landed) this.settled(ex, settlement);
        else this.jobLost(ex, 'settling');
        this.checkIdle();
      });
    }
    this.checkIdle();
  }

  private settled(ex: Execution, s: Settlement): void {
    const ref = { jobId: ex.job._id, type: ex.job.type, attempt: ex.job.attempts };
    const to = settlementTarget(s);
    if (s.kind === 'complete') {
      this.counters.completed++;
      this.logger.info({ ...ref, wallMs: s.resources?.wallMs }, 'job completed');
      this.events.emit('job:completed', { ...ref, result: s.result });
    } else if (s.kind === 'requeue') {
      this.counters.requeued++;
      this.logger.info(ref, 'job requeued');
      this.events.emit('job:requeued', ref);
    } else if (to === 'retrying' && s.retryAt) {
      this.counters.retried++;
      const delayMs = s.delayMs ?? s.retryAt.getTime() - this.clock.now().getTime();
      this.logger.info(
        { ...ref, error: s.error.message, code: s.error.code, runAt: s.retryAt },
        'job retrying',
      );
      this.events.emit('job:retrying', { ...ref, error: s.error, runAt: s.retryAt, delayMs });
      this.wakeup.at(s.retryAt.getTime(), this.clock.now().getTime());
    } else {
      this.counters.failed++;
      this.logger.info(
        { ...ref, error: s.error.message, code: s.error.code, name: s.error.name },
        'job failed',
      );
      this.events.emit('job:failed', { ...ref, error: s.error });
    }
  }

  private jobLost(ex: Execution, stage: 'running' | 'settling'): void {
    this.counters.lost++;
    const ref = { jobId: ex.job._id, type: ex.job.type, attempt: ex.job.attempts };
    this.logger.warn({ ...ref, stage }, 'job lease lost; nothing written');
    this.events.emit('job:lost', { ...ref, stage });
  }

  /** The database no longer shows our lease: stop the child; its outcome will not be written. */
  private leasesLost(ids: JobId[]): void {
    for (const id of ids) {
      const i = this.ready.findIndex((j) => j._id === id);
      if (i >= 0) {
        const [job] = this.ready.splice(i, 1);
        this.perType.set(job!.type, (this.perType.get(job!.type) ?? 1) - 1);
        const ref = { jobId: id, type: job!.type, attempt: job!.attempts };
        this.counters.lost++;
        this.logger.warn({ ...ref, stage: 'running' }, 'job lease lost before it started; nothing written');
        this.events.emit('job:lost', { ...ref, stage: 'running' });
        continue;
      }
      const ex = this.executions.get(id);
      if (!ex || ex.abortCause === 'lost') continue;
      ex.abortCause = 'lost';
      ex.controller.abort(new Error('lease lost'));
    }
  }

  /** Stopping: jobs claimed ahead never started; they go back to queued with the attempt given back. */
  private releaseReady(): void {
    const jobs = this.ready;
    this.ready = [];
    for (const job of jobs) {
      this.perType.set(job.type, (this.perType.get(job.type) ?? 1) - 1);
      const s: Settlement = {
        kind: 'requeue',
        jobId: job._id,
        token: job.lease!.token,
        attempt: job.attempts,
        message: 'claimed ahead but not started before shutdown; requeued with the attempt given back',
      };
      this.settler.add(s, (landed) => {
        if (!landed)
          this.logger.warn(
            { jobId: job._id },
            'lease of a job claimed ahead was lost before it was given back',
          );
      });
    }
    if (jobs.length > 0) this.logger.info({ jobs: jobs.length }, 'jobs claimed ahead given back');
  }

  private checkIdle(): void {
    if (this.executions.size > 0) return;
    const w = this.executionsIdle;
    this.executionsIdle = [];
    w.forEach((f) => f());
  }

  private executionsDone(): Promise<void> {
    if (this.executions.size === 0) return Promise.resolve();
    return new Promise((r) => this.executionsIdle.push(r));
  }

  /** A second stop() with a shorter graceMs cuts the grace period of the first. */
  stop(opts: { graceMs?: number } = {}): Promise<void> {
    if (this.stopPromise) {
      if (opts.graceMs !== undefined) setTimeout(() => this.cutGrace(), Math.max(0, opts.graceMs)).unref();
      return this.stopPromise;
    }
    this.stopPromise = this.doStop(opts.graceMs ?? this.config.worker.shutdownGraceMs);
    return this.stopPromise;
  }

  /** Ends the grace period early; a call before the grace period began makes it zero. */
  private cutGrace: () => void = () => {
    this.graceCut = true;
  };
  private graceCut = false;

  private async doStop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.logger.info({ running: this.executions.size, graceMs }, 'daemon stopping');
    this.events.emit('daemon:stopping', { workerId: this.workerId, graceMs });
    if (this.watchRetry) clearTimeout(this.watchRetry);
    this.wakeup.close();
    await Promise.all([this.watcher?.close(), this.rescuer.stop(), this.loopDone]);
    this.releaseReady();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.executionsDone(),
      new Promise<void>((r) => {
        // A second stop() may have cut the grace while the claim loop and watcher were closing.
        if (this.graceCut) return r();
        timer = setTimeout(r, graceMs);
        this.cutGrace = r;
      }),
    ]);
    clearTimeout(timer);
    const requeueBefore = this.counters.requeued;
    if (this.executions.size > 0) {
      this.logger.warn({ jobs: [...this.executions.keys()] }, 'shutdown grace passed; stopping running jobs');
      for (const ex of this.executions.values()) {
        if (ex.abortCause === null) ex.abortCause = 'shutdown';
        ex.controller.abort(new Error('jobd is shutting down'));
      }
      await this.executionsDone();
    }
    const unwritten = await this.settler.drain(Math.max(10_000, this.config.worker.killGraceMs));
    if (unwritten > 0)
      this.logger.error(
        { unwritten },
        'outcomes not written before exit; the rescuer will recover those jobs',
      );
    await this.leaseKeeper.stop();
    try {
      await markWorkerStopped(this.store, this.workerId, this.clock.now());
    } catch (err) {
      this.health.error('worker-stop', err);
    }
    if (this.ownsSandbox) await this.sandbox.close().catch(() => {});
    await this.store.close().catch(() => {});
    await this.embedded?.close().catch(() => {});
    const requeued = this.counters.requeued - requeueBefore;
    this.logger.info({ ...this.stats(), requeued }, 'daemon stopped');
    this.events.emit('daemon:stopped', { workerId: this.workerId, requeued });
    this.resolveDone();
  }
}
