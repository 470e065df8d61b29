/**
 * The claim loop: claim up to the free slots (in batches of claimBatchSize; with short jobs, up to a
 * batch more, which the slots hold until one frees), hand each job to the slots, and sleep until
 * something may be claimable: a change event, a freed slot, the earliest known runAt, or the poll
 * timer (adaptive pollMinMs..pollMaxMs; pollMaxMs as a safety net while a change stream is healthy).
 * Database errors are logged and backed off; the loop never exits on them.
 */
import {
  AmbiguousClaimError,
  claimBatch,
  claimNext,
  recoverClaim,
  familiesOf,
  type Family,
  type PendingClaim,
  type Store,
} from '../store/index.js';
import type { Clock } from '../clock.js';
import type { JobDoc, JobEventDoc } from '../types.js';
import type { DbHealth } from './dbHealth.js';
import type { ClaimSlots } from './slots.js';
import { Backoff, type Wakeup } from './wakeup.js';

export interface ClaimLoopDeps {
  store: Store;
  clock: Clock;
  owner: string;
  leaseMs: number;
  claimBatchSize: number;
  pollMinMs: number;
  pollMaxMs: number;
  wakeup: Wakeup;
  health: DbHealth;
  slots: ClaimSlots;
  /** healthy: a change stream is delivering wake-ups. */
  watch: { readonly healthy: boolean };
  /** Writes the claim events with its next write of events (the settler). */
  history: { addEvents(events: JobEventDoc[]): void };
}

export class ClaimLoop {
  private idleDelay: number;
  private readonly backoff = new Backoff(100, 5_000);
  private stopping = false;
  private running: Promise<void> = Promise.resolve();
  /** Claims whose write failed without a reply; settled (and their jobs started) once the database answers. */
  private readonly pendingClaims: PendingClaim[] = [];

  constructor(private readonly d: ClaimLoopDeps) {
    this.idleDelay = d.pollMinMs;
  }

  /** Runs until stop(); `onCrash` hears of anything but a database error (which is backed off). */
  start(onCrash: (err: unknown) => void): void {
    this.running = this.run().catch(onCrash);
  }

  /** Ends the loop after the round in flight. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.d.wakeup.close();
    await this.running;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.round();
      } catch (err) {
        // Not a database error (those are handled in the round): never let it end claiming.
        this.d.health.error('claim-loop', err);
        await this.d.wakeup.wait(this.backoff.next());
      }
    }
  }

  /** One claim, then the wait until something may be claimable. */
  private async round(): Promise<void> {
    const d = this.d;
    const slots = d.slots;
    if (this.pendingClaims.length > 0 && !(await this.recoverPending())) return;
    const free = slots.free();
    const capacity = slots.capacity();
    // Claim in batches: with jobs running, wait until enough slots are free to make a claim worth
    // its round trips (Slots.claimAtLeast); claim at once when idle.
    const worthIt = slots.claimAtLeast();
    // What may be claimed is worked out only when there is room to claim (about half the wake-ups
    // of a busy daemon find none).
    const room = free > 0 && (free >= worthIt || free >= capacity);
    const claimable = room ? slots.claimable() : null;
    if (!claimable || claimable.types.length === 0) {
      slots.setBlocked(true);
      await d.wakeup.wait(d.pollMaxMs);
      return;
    }
    slots.setBlocked(false);
    const limit = Math.min(free, d.claimBatchSize);
    let jobs: JobDoc[];
    try {
      const base = {
        owner: d.owner,
        leaseMs: d.leaseMs,
        now: d.clock.now(),
        types: claimable.types,
        eventSink: (events: JobEventDoc[]) => d.history.addEvents(events),
      };
      if (limit === 1) {
        const one = await claimNext(d.store, base);
        jobs = one ? [one] : [];
      } else {
        jobs = await claimBatch(d.store, {
          ...base,
          limit,
          typeSlots: claimable.slots,
          ...(claimable.queueSlots ? { queueSlots: claimable.queueSlots } : {}),
          ...(claimable.resources ? { admit: claimable.resources.admit } : {}),
        });
      }
      d.health.ok('claim');
      this.backoff.reset();
    } catch (err) {
      if (err instanceof AmbiguousClaimError) this.pendingClaims.push(err.pending);
      d.health.error('claim', err);
      await d.wakeup.wait(this.backoff.next());
      return;
    }
    await this.attachFamilies(jobs);
    for (const job of jobs) slots.accept(job);
    if (jobs.length === limit) {
      this.idleDelay = d.pollMinMs;
      return; // probably more waiting
    }
    // Jobs that took resources may have filled the batch's candidates with jobs that no longer fit;
    // the next round leaves their types out and reaches the jobs behind them. Each such round takes
    // resources, so this ends.
    const needy = claimable.resources?.types;
    if (needy && jobs.some((j) => needy.has(j.type))) {
      this.idleDelay = d.pollMinMs;
      return;
    }
    // Fewer than asked. If limited types held jobs back, a freed slot of theirs should wake us.
    slots.setBlocked(claimable.limited);
    if (jobs.length > 0) this.idleDelay = d.pollMinMs;
    const delay = d.watch.healthy ? d.pollMaxMs : this.idleDelay;
    if (jobs.length === 0) this.idleDelay = Math.min(d.pollMaxMs, this.idleDelay * 2);
    await d.wakeup.wait(delay);
  }

  /**
   * Dependencies' results and a resumed parent's children, for the whole batch in (at most) two
   * queries. The jobs are claimed already: if the database fails here they run without (a handler
   * that needs them fails its attempt, which is retried), after a second try.
   */
  private async attachFamilies(jobs: JobDoc[]): Promise<void> {
    if (!jobs.some((j) => (j.dependsOn?.length ?? 0) > 0 || (j.resumes ?? 0) > 0)) return;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const families = await familiesOf(this.d.store, jobs);
        for (const j of jobs) {
          const f = families.get(j._id);
          if (f) (j as JobDoc & { family?: Family }).family = f;
        }
        return;
      } catch (err) {
        this.d.health.error('claim', err);
      }
    }
  }

  /**
   * Find the jobs of ambiguous claims by their lease token and start them: they are this worker's,
   * with an attempt already counted. Returns false (after backing off) while the database is away.
   */
  private async recoverPending(): Promise<boolean> {
    const d = this.d;
    while (this.pendingClaims.length > 0) {
      const pending = this.pendingClaims[0]!;
      let jobs: JobDoc[];
      try {
        jobs = await recoverClaim(d.store, pending, {
          eventSink: (events) => d.history.addEvents(events),
        });
      } catch (err) {
        d.health.error('claim', err);
        await d.wakeup.wait(this.backoff.next());
        return false;
      }
      this.pendingClaims.shift();
      d.health.ok('claim');
      await this.attachFamilies(jobs);
      for (const job of jobs) d.slots.accept(job);
    }
    return true;
  }
}
