/**
 * Runs an async task every intervalMs, never two at once: the next run is scheduled when the last
 * one has settled. stop() cancels the next run and waits for the one in flight. intervalMs may be a
 * function, asked after each run (a service that knows when it is next needed, like the scheduler).
 * wake() runs the task now instead of at the next tick (or right after the run in flight).
 */
export class Periodic {
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<unknown> | null = null;
  private stopped = false;
  private again = false;

  constructor(
    private readonly intervalMs: number | (() => number),
    private readonly task: () => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    this.schedule();
  }

  /** Run now: at once when idle, or once more right after the run in flight. */
  wake(): void {
    if (this.stopped) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    if (this.timer) {
      clearTimeout(this.timer);
      this.schedule(0);
    }
  }

  private schedule(delayMs?: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(
      () => {
        // A task that throws at once, or an error handler that throws, must not become an unhandled
        // rejection (which ends the process).
        this.inFlight = Promise.resolve()
          .then(() => this.task())
          .catch((err: unknown) => {
            try {
              this.onError(err);
            } catch {
              // the handler only reports
            }
          })
          .finally(() => {
            this.inFlight = null;
            const again = this.again;
            this.again = false;
            this.schedule(again ? 0 : undefined);
          });
      },
      delayMs ?? (typeof this.intervalMs === 'number' ? this.intervalMs : this.intervalMs()),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }
}

/**
 * How often a service re-reads what its change stream watches while that stream is open and ready:
 * a safety net only (every relevant change wakes the service, and so does the stream's (re)opening).
 * At the poll settings' defaults (0.5-2 s) an idle daemon sent ~4.5 finds a second for nothing.
 */
export const STREAM_SAFETY_MS = 30_000;

/** The wait between passes: `pollMs` without a ready change stream, the safety interval with one. */
export function pollInterval(pollMs: number, streamReady: boolean): number {
  return streamReady ? Math.max(pollMs, STREAM_SAFETY_MS) : pollMs;
}
