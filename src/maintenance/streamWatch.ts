/**
 * The change stream of a maintenance service that polls as well (the scheduler, dataset status):
 * opened at start, reopened REOPEN_DELAY_MS after it ends (not when the server offers no change
 * streams), and `ready` from the moment the server has it established until it ends. While it is
 * ready the service's timer is only a safety net (pollInterval in periodic.ts); `wake` runs the
 * service's pass on each change, when the stream becomes ready (changes made while it was opening
 * raised nothing) and when a ready stream is lost (back to polling, from a pass now).
 */
import type { Logger } from 'pino';
import { isChangeStreamUnsupported, type Watcher, type WatchHandlers } from '../store/index.js';

const REOPEN_DELAY_MS = 1_000;

export class StreamWatch<T> {
  private watcher: Watcher | null = null;
  private reopen: NodeJS.Timeout | null = null;
  private stopped = false;
  private isReady = false;

  constructor(
    private readonly o: {
      /** Names the stream in the debug log of a reopen, e.g. 'schedules watch'. */
      name: string;
      /** Opens the stream; asked again at each reopen, so it opens with the service's current filter. */
      open(h: WatchHandlers<T>): Watcher;
      wake(): void;
      logger?: Logger;
    },
  ) {}

  /** Open and established on the server: every change it watches wakes the service. */
  get ready(): boolean {
    return this.isReady;
  }

  start(): void {
    this.openNow();
  }

  /**
   * Close the stream and open it again at once (with what open() gives now); the service polls until
   * the new one is ready, whose ready wakes a pass for what happened in between. A stream that ended
   * is already reopening, and opens with the new filter.
   */
  async restart(): Promise<void> {
    const old = this.watcher;
    if (!old || this.stopped) return;
    this.watcher = null;
    this.isReady = false;
    await old.close();
    this.openNow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reopen) clearTimeout(this.reopen);
    await this.watcher?.close();
  }

  private openNow(): void {
    if (this.stopped) return;
    try {
      const w = this.o.open({
        onChange: () => this.o.wake(),
        onReady: () => {
          if (this.watcher !== w) return;
          this.isReady = true;
          this.o.wake();
        },
        onError: (err, unsupported) => this.failed(w, err, unsupported),
      });
      this.watcher = w;
    } catch (err) {
      this.failed(null, err, isChangeStreamUnsupported(err));
    }
  }

  private failed(w: Watcher | null, err: unknown, unsupported: boolean): void {
    // A stream closed by restart() has a successor already.
    if (w !== null && this.watcher !== w) return;
    this.watcher = null;
    if (this.isReady) {
      this.isReady = false;
      this.o.wake();
    }
    if (unsupported || this.stopped || this.reopen) return;
    this.o.logger?.debug({ err: (err as Error)?.message }, `${this.o.name} ended; reopening`);
    this.reopen = setTimeout(() => {
      this.reopen = null;
      this.openNow();
    }, REOPEN_DELAY_MS);
  }
}
