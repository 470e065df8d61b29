/**
 * Writes job outcomes as a group commit: outcomes that arrive while a write is in flight go out
 * together in the next bulkWrite. When the database is down the outcomes stay here and the write is
 * retried with backoff until it lands or the lease turns out lost (guarded writes make retries safe).
 */
import {
  appendEvents,
  settleManyIfRunning,
  type SettleResult,
  type Settlement,
  type Store,
} from '../store/index.js';
import type { Clock } from '../clock.js';
import type { JobEventDoc } from '../types.js';
import type { DbHealth } from './dbHealth.js';
import { Backoff } from './wakeup.js';

export type SettleCallback = (landed: boolean) => void;

interface Pending {
  s: Settlement;
  done: SettleCallback;
}

export class Settler {
  private queue: Pending[] = [];
  private unwrittenEvents: JobEventDoc[] = [];
  private inFlight: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly backoff = new Backoff(100, 5_000);
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly opts: {
      owner: string;
      clock: Clock;
      errorHistory: number;
      maxBatch: number;
      health: DbHealth;
    },
  ) {}

  add(s: Settlement, done: SettleCallback): void {
    this.queue.push({ s, done });
    this.kick();
  }

  /** History events written elsewhere that failed; they go out before the next settlement. */
  addEvents(events: JobEventDoc[]): void {
    this.unwrittenEvents.push(...events);
    this.kick();
  }

  private kick(): void {
    if (this.inFlight || this.retryTimer) return;
    if (this.queue.length === 0 && this.unwrittenEvents.length === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      w.forEach((f) => f());
      return;
    }
    this.inFlight = this.flush().finally(() => {
      this.inFlight = null;
      this.kick();
    });
  }

  private async flush(): Promise<void> {
    const batch = this.queue.splice(0, this.opts.maxBatch);
    let res: SettleResult;
    try {
      if (this.unwrittenEvents.length > 0) {
        await appendEvents(this.store, this.unwrittenEvents);
        this.unwrittenEvents = [];
      }
      res = batch.length
        ? await settleManyIfRunning(
            this.store,
            batch.map((p) => p.s),
            { owner: this.opts.owner, now: this.opts.clock.now(), errorHistory: this.opts.errorHistory },
          )
        : { landed: [], lost: [], unwrittenEvents: [] };
    } catch (err) {
      this.opts.health.error('settle', err);
      this.queue.unshift(...batch);
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        this.kick();
      }, this.backoff.next());
      return;
    }
    this.backoff.reset();
    this.opts.health.ok('settle');
    this.unwrittenEvents.push(...res.unwrittenEvents);
    const landed = new Set(res.landed);
    for (const p of batch) p.done(landed.has(p.s.jobId));
  }

  /** Resolves when everything is written, or after timeoutMs (outcomes still unwritten are dropped). */
  async drain(timeoutMs: number): Promise<number> {
    if (this.queue.length > 0 || this.inFlight || this.unwrittenEvents.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => (timer = setTimeout(r, timeoutMs))),
      ]);
      clearTimeout(timer);
    }
    const left = this.queue.length;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.queue = [];
    return left;
  }
}
