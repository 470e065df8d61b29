/**
 * The jobs this daemon runs, from the moment a slot starts one until its outcome is written: the
 * sandbox run, its progress writes, and the hand-over of its outcome to the settler. Leases of all of
 * them are renewed by the lease keeper until the outcome lands.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import type { JobFamily, Sandbox } from '../sandbox/types.js';
import { serializeError } from '../errors.js';
import { failedAttempt, retrySettingsFor } from '../retryPolicy.js';
import {
  insertChildren,
  progressIfRunning,
  resolveNewJob,
  type HeldLease,
  type Settlement,
  type Store,
} from '../store/index.js';
import type { JobDoc, JobId, JobTypeDefinition, ResourceAllocation } from '../types.js';
import type { DbHealth } from './dbHealth.js';
import type { InlineRunner } from './inlineRunner.js';
import { LazyAbort } from '../sandbox/lazyAbort.cjs';
import { executeJob, isolatedSpawnOf, jobLogFile, type AbortCause, type Execution } from './executor.js';
import { LOG_SHIP_DEFAULT_MS, LOG_STORE_DEFAULT_BYTES, LogShipper } from './logShipper.js';
import type { OutcomeReporter } from './outcomes.js';
import type { Settler } from './settler.js';

export interface ExecutionsOptions {
  config: ResolvedConfig;
  logger: Logger;
  store: Store;
  sandbox: Sandbox;
  /** Runs the jobs of inline types in the daemon's process. */
  inline: InlineRunner;
  clock: Clock;
  random: () => number;
  health: DbHealth;
  settler: Settler;
  outcomes: OutcomeReporter;
  /** Runs jobd's own jobs (retention) in the daemon. */
  runSystem?(def: JobTypeDefinition, job: JobDoc, signal: AbortSignal): Promise<unknown>;
  /** A job finished running (its slot is free again), whatever its outcome. */
  onFinished(job: JobDoc, runMs: number): void;
  /** A write found the lease gone. */
  onLeaseLost(leases: HeldLease[]): void;
}

export class Executions {
  private readonly running = new Map<JobId, Execution>();
  /** Finished, outcome handed to the settler and not yet written. */
  private readonly settling = new Map<JobId, Execution>();
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly o: ExecutionsOptions) {}

  get runningCount(): number {
    return this.running.size;
  }

  get settlingCount(): number {
    return this.settling.size;
  }

  runningIds(): JobId[] {
    return [...this.running.keys()];
  }

  /** Leases held by jobs running or settling. */
  held(): HeldLease[] {
    return [...this.running.values(), ...this.settling.values()].map((e) => ({
      jobId: e.job._id,
      token: e.token,
    }));
  }

  /**
   * A job claimed ahead of a free slot: an isolated job's child may start now (sandbox/prestart.ts),
   * when worker.prestartIsolated allows.
   */
  ahead(job: JobDoc, allocation?: ResourceAllocation): void {
    if (!this.o.config.worker.prestartIsolated || !this.o.sandbox.prestart) return;
    const spec = isolatedSpawnOf(job, this.o.config, allocation);
    if (spec) this.o.sandbox.prestart(spec);
  }

  /** A job claimed ahead that will not start here: a child started ahead for it is killed. */
  dropped(job: JobDoc): void {
    this.o.sandbox.discard?.(job._id);
  }

  /** `allocation`: what the job took of the daemon's resources (its type declares needs). */
  start(job: JobDoc & { family?: JobFamily }, allocation?: ResourceAllocation): void {
    const ex: Execution = {
      job,
      token: job.lease!.token,
      controller: new LazyAbort(),
      abortCause: null,
      ...(job.family ? { family: job.family } : {}),
      ...(allocation ? { allocation } : {}),
    };
    this.running.set(job._id, ex);
    const t0 = performance.now();
    this.o.outcomes.started(job);
    const w = this.o.config.worker;
    let shipper: LogShipper | undefined;
    const ship = (): LogShipper =>
      (shipper ??= new LogShipper({
        store: this.o.store,
        logger: this.o.logger,
        jobId: job._id,
        attempt: job.attempts,
        run: job.seq ?? job.attempts,
        file: jobLogFile(this.o.config, job._id),
        maxBytes: w.logStoreBytes ?? LOG_STORE_DEFAULT_BYTES,
        intervalMs: w.logShipMs ?? LOG_SHIP_DEFAULT_MS,
        now: () => this.o.clock.now(),
      }));
    // A child (pooled or isolated) may write to the log at any time: its shipper reads where the file
    // starts now. An inline job's file is written only by the daemon, which says when (onOutput): most
    // write nothing, and then no shipper is made (no stat of the file, no timer).
    const def = this.o.config.jobTypes[job.type];
    if (def?.mode !== 'inline' || def.system) ship();
    void executeJob(ex, {
      config: this.o.config,
      sandbox: this.o.sandbox,
      inline: this.o.inline,
      now: () => this.o.clock.now(),
      random: this.o.random,
      onProgress: (percent, message) => this.progress(ex, percent, message),
      onOutput: () => void ship(),
      ...(this.o.runSystem ? { runSystem: this.o.runSystem } : {}),
    })
      .catch((err: unknown) => {
        this.o.logger.error({ jobId: job._id, err }, 'executor failed');
        return null;
      })
      // The whole log is stored before the outcome: whoever sees the job finished can read all of it.
      .then((settlement) => {
        // A child started ahead for a job that ended without running in it (a typed job's refused
        // input, an abort before the start) is not left waiting.
        this.o.sandbox.discard?.(job._id);
        // An inline job that never said it would write has nothing in its file from this attempt (no
        // shipper): finished at once, without a promise more per job.
        if (!shipper) return this.finish(ex, settlement, performance.now() - t0);
        // A completed attempt whose output tail is empty printed nothing (the tail holds its last
        // bytes, hooks' output included): no file to read.
        const silent = w.logTailBytes > 0 && settlement?.kind === 'complete' && settlement.logTail === '';
        return shipper.finish(silent).then(() => this.finish(ex, settlement, performance.now() - t0));
      })
      .catch((err: unknown) => this.o.logger.error({ jobId: job._id, err }, 'bookkeeping of a job failed'));
  }

  /**
   * Stop a running job's child. A lost lease wins over a shutdown (nothing may be written then).
   * False when the job is not running here (under `token`, when given) or was already stopped for
   * that cause.
   */
  abort(id: JobId, cause: AbortCause, reason: string, token?: string): boolean {
    const ex = this.running.get(id);
    if (!ex || ex.abortCause === cause || (token !== undefined && ex.token !== token)) return false;
    if (ex.abortCause === null || cause === 'lost') ex.abortCause = cause;
    ex.controller.abort(new Error(reason));
    return true;
  }

  abortAll(cause: AbortCause, reason: string): void {
    for (const id of [...this.running.keys()]) this.abort(id, cause, reason);
  }

  /** Resolves once no job is running (outcomes may still be settling). */
  idle(): Promise<void> {
    if (this.running.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private progress(ex: Execution, percent: number, message?: string): void {
    progressIfRunning(this.o.store, {
      jobId: ex.job._id,
      token: ex.token,
      percent,
      ...(message !== undefined ? { message } : {}),
      now: this.o.clock.now(),
    })
      .then(
        (held) => {
          if (!held) this.o.onLeaseLost([{ jobId: ex.job._id, token: ex.token }]);
        },
        (err: unknown) => this.o.health.error('progress', err),
      )
      .catch((err: unknown) =>
        this.o.logger.error({ jobId: ex.job._id, err }, 'progress bookkeeping failed'),
      );
  }

  /**
   * Write the children a handler spawned before its outcome (a parent never waits for children that
   * are not stored). A child that cannot be written fails the attempt instead.
   */
  private async withChildren(ex: Execution, s: Settlement): Promise<Settlement> {
    if (!ex.spawned && s.kind !== 'suspend') return s;
    const { job } = ex;
    const now = this.o.clock.now();
    try {
      const children = (ex.spawned ?? []).map((c) => {
        const def = this.o.config.jobTypes[c.type];
        const defaults = def ?? { priority: this.o.config.defaults.priority };
        return {
          ...resolveNewJob(
            c.type,
            c.params,
            {
              ...(c.options ?? {}),
              ...(c.dependsOnIds ? { dependsOn: c.dependsOnIds } : {}),
              ...(c.onDependencyFailure ? { onDependencyFailure: c.onDependencyFailure } : {}),
            },
            defaults,
            now,
          ),
          id: c.id,
          spawnKey: c.spawnKey,
        };
      });
      const waitFor = await insertChildren(this.o.store, job._id, children, now);
      // A job that spawned children settles the full way, release included.
      return s.kind === 'suspend' ? { ...s, children: waitFor } : { ...s, noDependents: false };
    } catch (err) {
      const error = serializeError(err);
      delete error.stack;
      error.message = `spawning children failed: ${error.message}`;
      const d = failedAttempt(job, error, retrySettingsFor(this.o.config, job.type), this.o.random());
      return {
        kind: 'fail',
        jobId: s.jobId,
        token: s.token,
        attempt: s.attempt,
        seq: s.seq,
        error,
        retryAt: d.retry ? new Date(now.getTime() + d.delayMs) : null,
        failedAt: now,
        ...(d.retry ? { delayMs: d.delayMs } : {}),
        ...(s.workflowId ? { workflowId: s.workflowId } : {}),
      };
    }
  }

  /** settlement null: the lease was lost while the job ran; nothing may be written. */
  private finish(ex: Execution, settlement: Settlement | null, runMs: number): void {
    const { job } = ex;
    this.running.delete(job._id);
    this.o.onFinished(job, runMs);
    if (settlement === null) {
      this.o.outcomes.lost(job, 'running');
    } else {
      this.settling.set(job._id, ex);
      if (!ex.spawned && settlement.kind !== 'suspend') {
        // No children to write first (most jobs): handed to the settler now, without three promises.
        try {
          this.settle(ex, settlement);
        } catch (err) {
          this.o.logger.error({ jobId: job._id, err }, 'settling a job failed');
        }
      } else {
        void this.withChildren(ex, settlement)
          .then((s) => this.settle(ex, s))
          .catch((err: unknown) => this.o.logger.error({ jobId: job._id, err }, 'settling a job failed'));
      }
    }
    this.checkIdle();
  }

  private settle(ex: Execution, settlement: Settlement): void {
    const { job } = ex;
    {
      this.o.settler.add(settlement, (status, written) => {
        this.settling.delete(job._id);
        if (status === 'landed') this.o.outcomes.settled(job, written);
        // A cancel (or rescue) that lands after the handler finished wins: the result is not recorded,
        // and what the handler wrote (an output renamed into place) stays. Say so, not just "lost".
        else if (status === 'lost')
          this.o.outcomes.lost(
            job,
            'settling',
            written.kind === 'complete'
              ? 'job finished, but its lease was lost (cancelled or rescued) before its completion was written; result not recorded, anything the handler wrote stays'
              : undefined,
          );
        else this.o.outcomes.lost(job, 'settling', 'outcome refused by the database; nothing written');
      });
    }
  }

  private checkIdle(): void {
    if (this.running.size > 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    w.forEach((f) => f());
  }
}
