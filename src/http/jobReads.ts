/**
 * Reads of single jobs for GET /api/jobs/{id}, batched: the reads asked for while the event loop
 * handles one round of I/O go to the database as one query (`_id: { $in }`) once that round is over
 * (setImmediate), instead of one command each. While MAX_IN_FLIGHT queries are out, new reads wait and
 * go together when one returns: under load the batches grow with the database's reply time, so the
 * commands per second stay about constant, and each command's fixed cost (the driver's command path, a
 * socket write and read on both sides) is shared by more requests. A lone request waits no timer, only
 * the end of its round.
 *
 * Each query starts after every request it answers has arrived, so an answer is never older than its
 * request: a client that wrote and then reads sees its write, as with a read of its own.
 */
import { getMany, type Store } from '../store/index.js';
import type { JobDoc, JobId } from '../types.js';

/** Ids per query: a bound on one command's size and on what one slow query holds up. */
const MAX_BATCH = 100;
/**
 * Queries out at once. Two keep the database busy while the server answers the previous batch; more
 * only split the same requests into smaller batches.
 */
const MAX_IN_FLIGHT = 2;

interface Waiter {
  resolve(job: JobDoc | null): void;
  reject(err: unknown): void;
}

export class JobReads {
  private pending = new Map<JobId, Waiter[]>();
  private scheduled = false;
  private inFlight = 0;
  /** Queries sent and ids asked for, since the start (for tests and diagnostics). */
  readonly stats = { queries: 0, ids: 0 };

  constructor(private readonly store: Store) {}

  /** The job, or null if there is none with this id. */
  get(id: JobId): Promise<JobDoc | null> {
    return new Promise((resolve, reject) => {
      const waiting = this.pending.get(id);
      if (waiting) waiting.push({ resolve, reject });
      else this.pending.set(id, [{ resolve, reject }]);
      if (!this.scheduled && this.inFlight < MAX_IN_FLIGHT) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Resolves once no read is waiting or out (the server's close waits for it). */
  async idle(): Promise<void> {
    while (this.pending.size || this.inFlight) await new Promise((resolve) => setImmediate(resolve));
  }

  private flush(): void {
    this.scheduled = false;
    if (this.pending.size === 0) return;
    let ids = 0;
    let batch = new Map<JobId, Waiter[]>();
    // The first MAX_BATCH ids of each query; what is left waits for a free slot.
    for (const [id, waiters] of this.pending) {
      if (this.inFlight >= MAX_IN_FLIGHT) break;
      batch.set(id, waiters);
      this.pending.delete(id);
      if (++ids === MAX_BATCH) {
        void this.read(batch);
        batch = new Map();
        ids = 0;
      }
    }
    if (batch.size) void this.read(batch);
  }

  private async read(batch: Map<JobId, Waiter[]>): Promise<void> {
    this.inFlight++;
    this.stats.queries++;
    this.stats.ids += batch.size;
    try {
      const found = new Map((await getMany(this.store, [...batch.keys()])).map((j) => [j._id, j]));
      for (const [id, waiters] of batch) for (const w of waiters) w.resolve(found.get(id) ?? null);
    } catch (err) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
    } finally {
      this.inFlight--;
      // Reads that arrived meanwhile go now: each of them arrived before this query's reply did.
      if (this.pending.size && !this.scheduled) this.flush();
    }
  }
}
