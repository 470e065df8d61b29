/** setTimeout's largest delay; a longer one fires at once (with a warning). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * What the claim loop sleeps on: a timeout, an explicit wake (change event, freed slot, stop), or
 * the earliest known runAt of a job that will become due (no change event fires when it arrives).
 */
export class Wakeup {
  private pending = false;
  private resolveWait: (() => void) | null = null;
  private dueAt: number | null = null;
  private dueTimer: NodeJS.Timeout | null = null;

  wake(): void {
    if (this.resolveWait) {
      const r = this.resolveWait;
      this.resolveWait = null;
      r();
    } else {
      this.pending = true;
    }
  }

  /** Wake when `at` (epoch ms) arrives, if that is earlier than what is already scheduled. */
  at(at: number, nowMs: number): void {
    if (at <= nowMs) return this.wake();
    if (this.dueAt !== null && this.dueAt <= at) return;
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueAt = at;
    // Further away than a timer reaches: wake then, look again (the poll timer comes sooner anyway).
    this.dueTimer = setTimeout(
      () => {
        this.dueAt = null;
        this.dueTimer = null;
        this.wake();
      },
      Math.min(at - nowMs, MAX_TIMER_MS),
    );
  }

  /** Resolves on wake() or after ms. A wake() that came while nobody waited returns at once. */
  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.resolveWait = null;
        resolve();
      }, ms);
      this.resolveWait = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  close(): void {
    if (this.dueTimer) clearTimeout(this.dueTimer);
    this.dueTimer = null;
    this.dueAt = null;
    this.wake();
  }
}

/** Exponential backoff for database errors: 100 ms doubling to maxMs, reset on success. */
export class Backoff {
  private current: number;
  constructor(
    private readonly minMs = 100,
    private readonly maxMs = 5_000,
  ) {
    this.current = minMs;
  }
  next(): number {
    const d = this.current;
    this.current = Math.min(this.maxMs, this.current * 2);
    return d;
  }
  reset(): void {
    this.current = this.minMs;
  }
}
