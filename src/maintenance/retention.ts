/**
 * Applies the `retention` settings: every `retention.intervalMs`, deletes finished jobs older than
 * their state's age, with their events and log files (the same code as `jobctl cleanup`). It runs on
 * every daemon; deleting is idempotent and guarded, so concurrent runs only share the work.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { ResolvedConfig } from '../config/types.js';
import { cleanupJobs } from '../ops/cleanup.js';
import { Periodic } from '../periodic.js';
import type { Store } from '../store/index.js';
import type { JobState } from '../types.js';

export interface RetentionOptions {
  config: ResolvedConfig;
  clock: Clock;
  logger?: Logger;
  onError?(err: unknown): void;
  onOk?(): void;
}

/** The ages of the retention settings that are set (null: kept for ever). */
export function retentionAges(config: ResolvedConfig): Partial<Record<JobState, number>> {
  const r = config.retention;
  const out: Partial<Record<JobState, number>> = {};
  if (r.completed !== null) out.completed = r.completed;
  if (r.failed !== null) out.failed = r.failed;
  if (r.cancelled !== null) out.cancelled = r.cancelled;
  return out;
}

export class Retention {
  readonly name = 'retention';
  private readonly loop: Periodic;

  constructor(
    private readonly store: Store,
    private readonly o: RetentionOptions,
  ) {
    this.loop = new Periodic(
      o.config.retention.intervalMs,
      () => this.runOnce(),
      (err) => this.o.onError?.(err),
    );
  }

  start(): void {
    if (Object.keys(retentionAges(this.o.config)).length > 0) this.loop.start();
  }

  async runOnce(): Promise<number> {
    const totals = await cleanupJobs(this.store, {
      olderThanMs: retentionAges(this.o.config),
      logDir: this.o.config.logDir,
      now: this.o.clock.now(),
    });
    this.o.onOk?.();
    if (totals.jobs > 0)
      this.o.logger?.info(
        { deleted: totals.jobs, events: totals.events },
        'retention: deleted finished jobs',
      );
    return totals.jobs;
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }
}
