/**
 * Runs an async task every intervalMs, never two at once: the next run is scheduled when the last
 * one has settled. stop() cancels the next run and waits for the one in flight. intervalMs may be a
 * function, asked after each run (a service that knows when it is next needed, like the scheduler).
 */
export class Periodic {
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<unknown> | null = null;
  private stopped = false;

  constructor(
    private readonly intervalMs: number | (() => number),
    private readonly task: () => Promise<unknown>,
    private readonly onError: (err: unknown) => void,
  ) {}

  start(): void {
    this.schedule();
  }

  private schedule(): void {
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
            this.schedule();
          });
      },
      typeof this.intervalMs === 'number' ? this.intervalMs : this.intervalMs(),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.inFlight;
  }
}
