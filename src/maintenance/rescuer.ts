/**
 * Rescues jobs whose lease expired (their worker died or lost the database): back to 'retrying'
 * after the job type's backoff, or 'failed' when attempts are used up. Runs on every daemon;
 * rescueExpired's guarded updates make concurrent rescuers safe.
 */
import type { Logger } from 'pino';
import { rescueExpired, type RescueResult, type Store } from '../store/index.js';
import type { Clock } from '../clock.js';
import { Periodic } from '../periodic.js';
import { failedAttempt, type RetrySettings } from '../retryPolicy.js';
import type { JobDoc, SerializedError } from '../types.js';

export interface RescuerOptions {
  intervalMs: number;
  clock: Clock;
  errorHistory: number;
  /** A job type's retry policy and maxAttempts (the global defaults for a type this daemon does not know). */
  retrySettings(type: string): RetrySettings;
  /** Recorded on the job events. */
  rescuerId?: string;
  logger?: Logger;
  random?: () => number;
  onRescued?(r: RescueResult): void;
  onError?(err: unknown): void;
  onOk?(): void;
}

/** When a rescued job runs again (the worker's own decision for a failed attempt); null: it fails for good. */
function rescueRetryAt(
  job: JobDoc,
  error: SerializedError,
  now: Date,
  settings: RetrySettings,
  random: number,
): Date | null {
  const d = failedAttempt(job, error, settings, random);
  return d.retry ? new Date(now.getTime() + d.delayMs) : null;
}

export class Rescuer {
  readonly name = 'rescuer';

  private readonly loop: Periodic;

  constructor(
    private readonly store: Store,
    private readonly o: RescuerOptions,
  ) {
    this.loop = new Periodic(
      o.intervalMs,
      () => this.runOnce(),
      (err) => this.o.onError?.(err),
    );
  }

  start(): void {
    this.loop.start();
  }

  /** One pass: rescue every expired lease (in chunks). */
  async runOnce(): Promise<RescueResult> {
    const total: RescueResult = { retrying: [], failed: [] };
    const random = this.o.random ?? Math.random;
    for (;;) {
      const now = this.o.clock.now();
      const r = await rescueExpired(this.store, {
        now,
        errorHistory: this.o.errorHistory,
        rescuer: this.o.rescuerId,
        limit: 500,
        retryAt: (job, error) => rescueRetryAt(job, error, now, this.o.retrySettings(job.type), random()),
      });
      total.retrying.push(...r.retrying);
      total.failed.push(...r.failed);
      if (r.retrying.length + r.failed.length < 500) break;
    }
    this.o.onOk?.();
    if (total.retrying.length + total.failed.length > 0) {
      this.o.logger?.warn(
        { retrying: total.retrying, failed: total.failed },
        'rescued jobs with expired leases',
      );
      this.o.onRescued?.(total);
    }
    return total;
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }
}
