/**
 * Reads of single jobs for GET /api/jobs/{id}, batched: the reads asked for while the event loop
 * handles one round of I/O go to the database as one query (`_id: { $in }`) once that round is over
 * (setImmediate), instead of one command each. Under many concurrent requests this is what the
 * database's per-command cost allows; a lone request waits no timer, only the end of its round.
 *
 * Each query starts after every request it answers has arrived, so an answer is never older than its
 * request: a client that wrote and then reads sees its write, as with a read of its own.
 */
import { getMany, type Store } from '../store/index.js';
import type { JobDoc, JobId } from '../types.js';

/** Ids per query: a bound on one command's size and on what one slow query holds up. */
const MAX_BATCH = 100;

interface Waiter {
  resolve(job: JobDoc | null): void;
  reject(err: unknown): void;
}

export class JobReads {
  private pending = new Map<JobId, Waiter[]>();
  private scheduled = false;

  constructor(private readonly store: Store) {}

  /** The job, or null if there is none with this id. */
  get(id: JobId): Promise<JobDoc | null> {
    return new Promise((resolve, reject) => {
      const waiting = this.pending.get(id);
      if (waiting) waiting.push({ resolve, reject });
      else this.pending.set(id, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const all = [...this.pending];
    this.pending = new Map();
    for (let i = 0; i < all.length; i += MAX_BATCH) void this.read(new Map(all.slice(i, i + MAX_BATCH)));
  }

  private async read(batch: Map<JobId, Waiter[]>): Promise<void> {
    try {
      const found = new Map((await getMany(this.store, [...batch.keys()])).map((j) => [j._id, j]));
      for (const [id, waiters] of batch) for (const w of waiters) w.resolve(found.get(id) ?? null);
    } catch (err) {
      for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
    }
  }
}
