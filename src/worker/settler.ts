/**
 * Writes job outcomes as a group commit: outcomes that arrive while a write is in flight go out
 * together in the next bulkWrite.
 * - An outage (the database does not answer) keeps the outcomes here; the write is retried with
 *   backoff until it lands or the lease turns out lost (guarded writes make retries safe).
 * - A refusal (the database answered no) is never taken for an outage: the batch is split and each
 *   outcome written alone, so one bad outcome cannot hold up the others. An outcome refused on its
 *   own fails its attempt instead (OutcomeRefusedError), with the database's reason; if even that is
 *   refused, the outcome is dropped and the rescuer settles the job once its lease expires.
 */
import { OutcomeRefusedError, serializeError } from '../errors.js';
import {
  appendEvents,
  isTransientDbError,
  redactMongoUri,
  settleManyIfRunning,
  type SettleResult,
  type Settlement,
  type Store,
} from '../store/index.js';
import type { Clock } from '../clock.js';
import type { JobEventDoc } from '../types.js';
import type { DbHealth } from './dbHealth.js';
import { Backoff } from './wakeup.js';

/**
 * How long a claim's events may wait for the next settlement's insert of events (addEvents). Well
 * under the ten seconds after which a reader of the history shows a gap (docs/state-machine.md).
 */
const EVENT_HOLD_MS = 1_000;

/**
 * landed: the settlement `s` is written (it may differ from the one added: a refused outcome
 * becomes a failure). lost: the lease was gone, nothing written. refused: nothing could be written.
 */
export type SettleCallback = (status: 'landed' | 'lost' | 'refused', s: Settlement) => void;

interface Pending {
  s: Settlement;
  done: SettleCallback;
  /** Written on its own (its batch was refused). */
  alone?: boolean;
  /** The database refused this outcome already; this is its replacement. */
  replacement?: boolean;
}

export interface SettlerOptions {
  owner: string;
  clock: Clock;
  errorHistory: number;
  maxBatch: number;
  health: DbHealth;
  /**
   * Runs after a batch landed, before the next one is written: tells the dependents of the jobs that
   * finished or suspended (its failures are left to the releaser sweep).
   */
  afterLanded?(landed: Settlement[]): Promise<void>;
  /** Something went wrong that is not an outage: `message` says what jobd does about it (logged). */
  onRefused(message: string, err: unknown, s?: Settlement): void;
}

export class Settler {
  private queue: Pending[] = [];
  /** History events waiting for the next write: claims', and those whose write failed. */
  private events: JobEventDoc[] = [];
  private inFlight: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** Ends the wait of held events (addEvents) for a settlement to carry them. */
  private holdTimer: NodeJS.Timeout | null = null;
  private draining = false;
  private readonly backoff = new Backoff(100, 5_000);
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly store: Store,
    private readonly opts: SettlerOptions,
  ) {}

  add(s: Settlement, done: SettleCallback): void {
    this.queue.push({ s, done });
    this.kick();
  }

  /**
   * History events to write (a claim's): with the next settlement's events, or on their own once
   * they have waited EVENT_HOLD_MS for one. A claim made while jobs run (claimed ahead, or a freed
   * slot's next job) is so written with the insert of an outcome that follows within moments, instead
   * of an insert of its own: one command fewer per job. A job has at most this one event unwritten.
   */
  addEvents(events: JobEventDoc[]): void {
    for (const e of events) this.events.push(e);
    if (this.queue.length === 0 && !this.draining) {
      this.holdTimer ??= setTimeout(() => {
        this.holdTimer = null;
        this.kick();
      }, EVENT_HOLD_MS);
      return;
    }
    this.kick();
  }

  private kick(): void {
    if (this.inFlight || this.retryTimer) return;
    if (this.queue.length === 0 && this.events.length === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      w.forEach((f) => f());
      return;
    }
    // Held events wait for a settlement, or for their hold to end.
    if (this.queue.length === 0 && this.holdTimer && !this.draining) return;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    this.inFlight = this.flush()
      .catch((err: unknown) => this.opts.onRefused('writing outcomes failed; trying again', err))
      .finally(() => {
        this.inFlight = null;
        this.kick();
      });
  }

  private retryLater(): void {
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, this.backoff.next());
  }

  private async flush(): Promise<void> {
    if (this.queue.length === 0) {
      if (this.events.length > 0) await this.flushEvents();
      return;
    }
    const batch = this.queue[0]!.alone ? this.queue.splice(0, 1) : this.takeBatch();
    // A job's transitions are recorded in order, so that a writer dying in between leaves at most one
    // event missing (docs/state-machine.md, History): waiting events of a job about to be settled (its
    // claim, when it ran quicker than a write) are written first, on their own. Others wait for the
    // settlements' insert of events, with those that arrive while the settlements are being written.
    if (this.events.length > 0 && (batch[0]!.alone || this.eventsOf(batch))) {
      if (!(await this.flushEvents())) {
        this.queue.unshift(...batch);
        return;
      }
    }
    let res: SettleResult;
    try {
      res = await settleManyIfRunning(
        this.store,
        batch.map((p) => p.s),
        { owner: this.opts.owner, now: this.opts.clock.now(), errorHistory: this.opts.errorHistory },
        () => this.takeEvents(),
      );
    } catch (err) {
      if (isTransientDbError(err)) {
        this.opts.health.error('settle', err);
        this.queue.unshift(...batch);
        this.retryLater();
      } else if (batch.length > 1) {
        // Which outcome the database refused is not known: write each alone. Repeating one that
        // did land reads back as landed (settledToken), so nothing is written twice.
        this.queue.unshift(...batch.map((p) => ({ ...p, alone: true })));
      } else {
        this.refused(batch[0]!, err);
      }
      return;
    }
    this.backoff.reset();
    this.opts.health.ok('settle');
    for (const e of res.unwrittenEvents) this.events.push(e);
    const landed = new Set(res.landed);
    for (const p of batch) this.report(p, landed.has(p.s.jobId) ? 'landed' : 'lost');
    if (this.opts.afterLanded && landed.size > 0) {
      await this.opts.afterLanded(batch.filter((p) => landed.has(p.s.jobId)).map((p) => p.s));
    }
  }

  /** Whether a waiting event belongs to a job of `batch`. */
  private eventsOf(batch: Pending[]): boolean {
    const ids = new Set(batch.map((p) => p.s.jobId));
    return this.events.some((e) => ids.has(e.jobId));
  }

  private takeEvents(): JobEventDoc[] {
    const events = this.events;
    this.events = [];
    return events;
  }

  /** Up to maxBatch outcomes from the head of the queue, stopping at one that must go alone. */
  private takeBatch(): Pending[] {
    let n = 0;
    while (n < this.queue.length && n < this.opts.maxBatch && !this.queue[n]!.alone) n++;
    return this.queue.splice(0, n);
  }

  /** The waiting events on their own. False while the database is away. */
  private async flushEvents(): Promise<boolean> {
    const events = this.events;
    this.events = [];
    try {
      await appendEvents(this.store, events);
      return true;
    } catch (err) {
      if (isTransientDbError(err)) {
        this.events = events.concat(this.events);
        this.opts.health.error('settle', err);
        this.retryLater();
        return false;
      }
      // Refused history cannot block outcomes; the gap shows in the job's numbered history.
      this.opts.onRefused(
        "the database refused history events; they are dropped (the job's history marks the gap)",
        err,
      );
      return true;
    }
  }

  private refused(p: Pending, err: unknown): void {
    if (p.replacement || p.s.kind === 'requeue') {
      this.opts.onRefused(
        'the database refused an outcome; nothing is written, and the rescuer settles the job when its lease expires',
        err,
        p.s,
      );
      this.report(p, 'refused');
      return;
    }
    this.opts.onRefused(
      'the database refused an outcome; the attempt fails with OutcomeRefusedError instead',
      err,
      p.s,
    );
    const why = redactMongoUri(err instanceof Error ? err.message : String(err));
    const error = serializeError(
      new OutcomeRefusedError(`the database refused to store this attempt's outcome: ${why}`),
    );
    delete error.stack;
    const s: Settlement = {
      kind: 'fail',
      jobId: p.s.jobId,
      token: p.s.token,
      attempt: p.s.attempt,
      seq: p.s.seq,
      error,
      retryAt: null,
      ...(p.s.resources !== undefined ? { resources: p.s.resources } : {}),
      ...(p.s.workflowId ? { workflowId: p.s.workflowId } : {}),
    };
    this.queue.unshift({ s, done: p.done, alone: true, replacement: true });
  }

  private report(p: Pending, status: 'landed' | 'lost' | 'refused'): void {
    try {
      p.done(status, p.s);
    } catch (err) {
      this.opts.onRefused('a settle callback threw', err, p.s);
    }
  }

  /** Resolves when everything is written, or after timeoutMs (outcomes still unwritten are dropped). */
  async drain(timeoutMs: number): Promise<number> {
    this.draining = true;
    this.kick();
    if (this.queue.length > 0 || this.inFlight || this.events.length > 0) {
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
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    this.queue = [];
    return left;
  }
}
