/**
 * At most one progress report per interval: the first goes out at once, later ones within the
 * interval replace each other and the last is delivered when the interval ends or at close().
 */
export class ProgressCoalescer {
  private last = -Infinity;
  private pending: { percent: number; message?: string } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly intervalMs: number,
    private readonly emit: (percent: number, message?: string) => void,
  ) {}

  push(percent: number, message?: string): void {
    if (this.closed) return;
    this.pending = { percent, ...(message !== undefined ? { message } : {}) };
    if (this.timer) return;
    const wait = this.last + this.intervalMs - performance.now();
    if (wait <= 0) this.fire();
    else this.timer = setTimeout(() => this.fire(), wait);
  }

  /** Deliver the last pending value, if any, and stop. */
  close(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.fire();
    this.closed = true;
  }

  private fire(): void {
    this.timer = null;
    const p = this.pending;
    if (!p) return;
    this.pending = null;
    this.last = performance.now();
    this.emit(p.percent, p.message);
  }
}

/** A coalescer that hands each report to the run's onProgress hook; a hook that throws is logged, not fatal. */
export function hookedProgress(
  intervalMs: number,
  onProgress: (percent: number, message?: string) => void,
  warn: (why: { err: string }) => void,
): ProgressCoalescer {
  return new ProgressCoalescer(intervalMs, (percent, message) => {
    try {
      onProgress(percent, message);
    } catch (err) {
      warn({ err: (err as Error).message });
    }
  });
}
