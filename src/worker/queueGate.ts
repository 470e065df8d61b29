/**
 * Which queues this daemon claims from now: those worker.queues allows (all when unset) that no
 * operator paused. The paused set lives in the `queues` collection; the daemon reads it at start,
 * again on every change the change stream reports and when the stream (re)opens, and every
 * `refreshMs` (worker.pollMaxMs) while no stream is ready: the bound on how late a pause or resume is
 * seen where change streams are unavailable. While one is ready the timer is only a safety net
 * (STREAM_SAFETY_MS). A resume wakes the claim loop.
 */
import type { Logger } from 'pino';
import { pollInterval } from '../periodic.js';
import { pausedQueues, watchQueues, type Store, type Watcher } from '../store/index.js';
import type { DbHealth } from './dbHealth.js';
import type { DaemonEvents, TypedEmitter } from './events.js';
import type { QueueRules } from './slots.js';
import type { Wakeup } from './wakeup.js';

const REOPEN_DELAY_MS = 1_000;

export interface QueueGateOptions {
  store: Store;
  /** worker.queues; null: every queue. */
  allowed: readonly string[] | null;
  queueOf: Readonly<Record<string, string>>;
  limits: Readonly<Record<string, number>>;
  refreshMs: number;
  changeStreams: boolean;
  wakeup: Wakeup;
  health: DbHealth;
  events: TypedEmitter<DaemonEvents>;
  logger: Logger;
}

export class QueueGate implements QueueRules {
  private paused = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private reopen: NodeJS.Timeout | null = null;
  private watcher: Watcher | null = null;
  private closed = false;
  private reading: Promise<void> | null = null;
  private again = false;
  /** The stream is open and ready: it reports every change, so the timer is a safety net. */
  private streamReady = false;

  constructor(private readonly o: QueueGateOptions) {}

  get queueOf(): Readonly<Record<string, string>> {
    return this.o.queueOf;
  }

  get limits(): Readonly<Record<string, number>> {
    return this.o.limits;
  }

  open(queue: string): boolean {
    return (this.o.allowed === null || this.o.allowed.includes(queue)) && !this.paused.has(queue);
  }

  /** Reads the paused set once (a failure is logged; claiming waits for the next read), then keeps it fresh. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.o.changeStreams) this.watch();
    this.tick();
  }

  /** The next timed re-read, at the interval that holds now (asked again after each read). */
  private tick(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.closed) return;
    const timer = setTimeout(() => {
      void this.refresh().finally(() => {
        if (this.timer === timer) this.tick();
      });
    }, pollInterval(this.o.refreshMs, this.streamReady));
    timer.unref?.();
    this.timer = timer;
  }

  /** Re-read the paused queues; concurrent calls share one read and ask for one more after it. */
  refresh(): Promise<void> {
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = (async () => {
      do {
        this.again = false;
        try {
          this.apply(await pausedQueues(this.o.store));
          this.o.health.ok('queues');
        } catch (err) {
          this.o.health.error('queues', err);
        }
      } while (this.again && !this.closed);
    })().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private apply(names: string[]): void {
    const next = new Set(names);
    const same = next.size === this.paused.size && names.every((n) => this.paused.has(n));
    if (same) return;
    const resumed = [...this.paused].some((n) => !next.has(n));
    this.paused = next;
    this.o.logger.info({ paused: [...next].sort() }, 'paused queues changed');
    this.o.events.emit('queues:paused', { paused: [...next].sort() });
    if (resumed) this.o.wakeup.wake();
  }

  private watch(): void {
    if (this.closed) return;
    try {
      const w = watchQueues(this.o.store, {
        onChange: () => void this.refresh(),
        // A change between the first read and the stream's start raised no event.
        onReady: () => {
          if (this.watcher !== w) return;
          this.streamReady = true;
          void this.refresh();
          this.tick();
        },
        onError: (err, unsupported) => {
          if (this.watcher !== w) return;
          this.watcher = null;
          // Back to re-reading every refreshMs at once, starting with a read now.
          if (this.streamReady) {
            this.streamReady = false;
            void this.refresh();
            this.tick();
          }
          if (unsupported || this.closed) return; // the periodic re-read carries on alone
          this.o.health.error('queues-watch', err);
          this.reopen ??= setTimeout(() => {
            this.reopen = null;
            this.watch();
          }, REOPEN_DELAY_MS);
        },
      });
      this.watcher = w;
    } catch (err) {
      this.o.health.error('queues-watch', err);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.reopen) clearTimeout(this.reopen);
    await this.watcher?.close();
    await this.reading;
  }
}
