/**
 * The maintenance services every daemon runs beside its claim loop, each on its own non-overlapping
 * timer (Periodic). Each is safe to run on many daemons at once: their writes are guarded.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { retrySettingsFor } from '../retryPolicy.js';
import type { FiredJob, ReleaseResult, RescueResult, Store } from '../store/index.js';
import type { ScheduleDoc } from '../types.js';
import { Releaser } from './releaser.js';
import { Rescuer } from './rescuer.js';
import { Scheduler } from './scheduler.js';
import { DatasetStatusService } from './datasetStatus.js';
import { resolveDatasets } from '../config/datasets.js';

export interface MaintenanceService {
  /** Names the service in health reports and logs. */
  readonly name: string;
  start(): void;
  /** Cancels the next run and waits for the one in flight. */
  stop(): Promise<void>;
}

export interface MaintenanceOptions {
  store: Store;
  config: ResolvedConfig;
  clock: Clock;
  /** This daemon's worker id, recorded on the events the services write. */
  workerId: string;
  logger: Logger;
  random: () => number;
  onRescued(r: RescueResult): void;
  onFired?(schedule: ScheduleDoc, jobs: FiredJob[]): void;
  onReleased?(r: ReleaseResult): void;
  onWorkflows?(w: { started: string[]; abandoned: string[] }): void;
  /** A run of `service` failed (a database error, usually) / succeeded. */
  onError(service: string, err: unknown): void;
  onOk(service: string): void;
}

/** How often the releaser sweeps for missed releases unless maintenance.releaseIntervalMs says otherwise. */
export const DEFAULT_RELEASE_INTERVAL_MS = 5_000;

export class Maintenance {
  private readonly services: MaintenanceService[];

  constructor(o: MaintenanceOptions) {
    this.services = [
      new Rescuer(o.store, {
        intervalMs: o.config.maintenance.rescueIntervalMs,
        clock: o.clock,
        errorHistory: o.config.worker.errorHistory,
        retrySettings: (type) => retrySettingsFor(o.config, type),
        rescuerId: o.workerId,
        logger: o.logger,
        random: o.random,
        onRescued: o.onRescued,
        onError: (err) => o.onError('rescue', err),
        onOk: () => o.onOk('rescue'),
      }),
      new Scheduler(o.store, {
        clock: o.clock,
        pollMs: o.config.maintenance.schedulePollMs,
        changeStreams: o.config.worker.changeStreams,
        aliveWithinMs: 2 * o.config.worker.leaseMs,
        workerId: o.workerId,
        defaultsFor: (type) => {
          const t = o.config.jobTypes[type];
          return t
            ? { priority: t.priority, maxAttempts: t.maxAttempts, timeoutMs: t.timeoutMs }
            : { priority: o.config.defaults.priority };
        },
        logger: o.logger,
        ...(o.onFired ? { onFired: o.onFired } : {}),
        onError: (err) => o.onError('scheduler', err),
        onOk: () => o.onOk('scheduler'),
      }),
      new Releaser(o.store, {
        intervalMs: o.config.maintenance.releaseIntervalMs ?? DEFAULT_RELEASE_INTERVAL_MS,
        clock: o.clock,
        logger: o.logger,
        ...(o.onReleased ? { onReleased: o.onReleased } : {}),
        ...(o.onWorkflows ? { onWorkflows: o.onWorkflows } : {}),
        onError: (err) => o.onError('release-sweep', err),
        onOk: () => o.onOk('release-sweep'),
      }),
      new DatasetStatusService(o.store, {
        settings: o.config.datasets ?? resolveDatasets(undefined),
        clock: o.clock,
        changeStreams: o.config.worker.changeStreams,
        logger: o.logger,
        onError: (err) => o.onError('dataset-status', err),
        onOk: () => o.onOk('dataset-status'),
      }),
    ];
  }

  start(): void {
    for (const s of this.services) s.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.services.map((s) => s.stop()));
  }
}
