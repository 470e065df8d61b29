/**
 * When the durable store compacts. Compaction is due after an append has grown the log enough; it
 * then runs from setImmediate, after the reply of the command that made it due has been written, so
 * that command is not held up by a full snapshot. It still runs synchronously, between two commands,
 * so the snapshot is a state some reply has described.
 *
 * A failed compaction loses nothing: every acknowledged write is still in the log. It is logged and
 * tried again after 1, 2, 4, ... (at most 1024) further appends, so a full disk is not hammered with
 * a snapshot per command.
 */
import { performance } from 'node:perf_hooks';
import type { DurableStore, SnapshotCollection } from './persistenceTypes.js';

const MAX_RETRY_APPENDS = 1024;

export class CompactionScheduler {
  private immediate: NodeJS.Immediate | undefined;
  private stopped = false;
  private backoff = 0;
  private appendsUntilRetry = 0;

  constructor(
    private readonly store: DurableStore,
    private readonly snapshot: () => SnapshotCollection[],
    private readonly log: (msg: string) => void,
    /** False while a command's effects are in memory but not yet committed. */
    private readonly betweenCommands: () => boolean,
  ) {}

  /** Called after each successful append. */
  noteAppend(): void {
    if (this.appendsUntilRetry > 0) {
      this.appendsUntilRetry--;
      return;
    }
    if (this.immediate || this.stopped || !this.store.shouldCompact()) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      if (this.stopped) return;
      if (this.betweenCommands()) this.run(false);
      else this.noteAppend();
    });
  }

  /** Compacts now when due (or always, with `force`); never throws. Returns whether it compacted. */
  run(force: boolean): boolean {
    if (!force && !this.store.shouldCompact()) return false;
    const started = performance.now();
    try {
      this.store.compact(this.snapshot());
    } catch (err) {
      this.backoff = Math.min(Math.max(1, this.backoff * 2), MAX_RETRY_APPENDS);
      this.appendsUntilRetry = this.backoff;
      this.log(
        `jobd-embedded: compaction of ${this.store.dir} failed: ${err instanceof Error ? err.message : String(err)}; ` +
          `no data is lost (the log holds every write); trying again after ${this.backoff} more write(s)`,
      );
      return false;
    }
    this.backoff = 0;
    this.appendsUntilRetry = 0;
    this.log(`jobd-embedded: compacted ${this.store.dir} in ${(performance.now() - started).toFixed(1)} ms`);
    return true;
  }

  /** No more scheduled compactions (shutdown). */
  stop(): void {
    this.stopped = true;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
  }
}
