/**
 * Change-stream wake-up: a change stream on claimable jobs wakes the claim loop when a job becomes
 * due (or arms a timer for a future runAt), so the loop polls only as a safety net. A stream that
 * fails is reopened (one reopen pending at a time); one the server cannot offer leaves the loop polling.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { watchClaimable, type Store, type Watcher } from '../store/index.js';
import type { DbHealth } from './dbHealth.js';
import type { DaemonEvents, TypedEmitter } from './events.js';
import type { Wakeup } from './wakeup.js';

const REOPEN_DELAY_MS = 1_000;

export class ClaimWatch {
  private watcher: Watcher | null = null;
  private retry: NodeJS.Timeout | null = null;
  private closed = false;
  /** True while a stream is delivering wake-ups (optimistic from the moment it is opened). */
  healthy = false;

  constructor(
    private readonly o: {
      store: Store;
      clock: Clock;
      wakeup: Wakeup;
      health: DbHealth;
      events: TypedEmitter<DaemonEvents>;
      logger: Logger;
    },
  ) {}

  open(reopening = false): void {
    if (this.closed) return;
    // Jobs enqueued while no stream was open raised no event: look once now.
    if (reopening) this.o.wakeup.wake();
    try {
      this.watcher = watchClaimable(this.o.store, {
        onChange: ({ runAt }) => {
          this.healthy = true;
          const now = this.o.clock.now().getTime();
          if (!runAt || runAt.getTime() <= now) this.o.wakeup.wake();
          else this.o.wakeup.at(runAt.getTime(), now);
        },
        onReady: () => {
          // Jobs enqueued while the stream was being opened raised no event.
          this.o.wakeup.wake();
          this.o.events.emit('watch:ready', {});
        },
        onError: (err, unsupported) => this.failed(err, unsupported),
      });
    } catch (err) {
      // Opening can throw at once (a client closing under it): reopen later like any stream error.
      this.failed(err, false);
      return;
    }
    // Optimistic until it errors: a healthy stream lets the claim loop poll only as a safety net.
    this.healthy = true;
  }

  private failed(err: unknown, unsupported: boolean): void {
    this.healthy = false;
    this.watcher = null;
    if (unsupported) {
      this.o.logger.warn({ message: (err as Error)?.message }, 'change streams unavailable; polling');
      this.o.events.emit('watch:fallback', { reason: String((err as Error)?.message ?? err) });
      return;
    }
    this.o.health.error('watch', err);
    // One reopen pending at a time, whatever the stream reported.
    if (!this.closed && !this.retry) {
      this.retry = setTimeout(() => {
        this.retry = null;
        this.open(true);
      }, REOPEN_DELAY_MS);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    await this.watcher?.close();
  }
}
