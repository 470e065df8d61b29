/**
 * The daemon's slots: how many jobs it runs at once (worker.concurrency, and each job type's own
 * concurrency), and the jobs it claimed ahead of a free slot. The claim loop asks these how much to
 * claim and hands every claimed job back here; a job starts when a slot is free. Jobs of types that
 * declare needs also take them from the resource ledger when accepted and give them back when released.
 */
import type { JobTypeDefinition, JobDoc, JobId, ResourceAllocation } from '../types.js';
import { needsOf, type ResourceLedger } from './resources.js';
import type { Wakeup } from './wakeup.js';

/**
 * Claiming ahead: when jobs are short, the claim loop may take up to one batch more than the free
 * slots, so claims (and their events) go out in batches even at low concurrency. A job claimed ahead
 * holds its lease (renewed with the others) while it waits, so the queue is sized to wait about this
 * long on average, from the recent run time of jobs; long jobs are never claimed ahead.
 */
const CLAIM_AHEAD_WAIT_MS = 50;
/**
 * Jobs that run up to this long on average still get one job claimed ahead: its claim then happens
 * while a job runs, not between the end of one and the start of the next (an isolated job is mostly
 * its process start-up, 100–300 ms, and a claim round trip on its critical path costs ~10% of it).
 */
const ONE_AHEAD_MAX_RUN_MS = 1_000;
/** Weight of the newest run time in its moving average. */
const RUN_MS_WEIGHT = 0.1;

/** What this daemon may claim now. */
export interface ClaimableTypes {
  /** The job types it runs, minus those at their own concurrency limit. */
  types: string[];
  /** Free slots of the types that have a limit of their own. */
  slots: Record<string, number>;
  /** Some type has a limit of its own: a freed slot of it may make more claimable. */
  limited: boolean;
  /** Free slots of the queues that have a limit of their own. */
  queueSlots?: { queueOf: Readonly<Record<string, string>>; free: Record<string, number> };
  /**
   * Present when a type that declares needs is claimable: `admit` tells, candidate by candidate in
   * claim order, whether its needs still fit what the batch left free; `types` are those types.
   */
  resources?: { admit(type: string): boolean; types: ReadonlySet<string> };
}

/** The daemon's queues: which type is in which, which are open now, and their own limits. */
export interface QueueRules {
  /** type → queue (a type not listed is in the queue of its name). */
  queueOf: Readonly<Record<string, string>>;
  /** Allowed on this daemon (worker.queues) and not paused. */
  open(queue: string): boolean;
  /** Per-daemon concurrency of the queues that have one. */
  limits: Readonly<Record<string, number>>;
}

/** What the claim loop needs from the slots. */
export interface ClaimSlots {
  /** Jobs this daemon can take now: free execution slots plus room in its claimed-ahead queue. */
  free(): number;
  /** Execution slots plus the claim-ahead allowance. */
  capacity(): number;
  /** How many free places make a claim worth its round trip while jobs run (see Slots.claimAtLeast). */
  claimAtLeast(): number;
  claimable(): ClaimableTypes;
  /** A claimed job: it starts now if a slot is free, else waits claimed ahead. */
  accept(job: JobDoc): void;
  /** The loop waits for a slot: the next freed slot should wake it. */
  setBlocked(blocked: boolean): void;
}

export interface SlotsOptions {
  concurrency: number;
  claimBatchSize: number;
  jobTypes: Record<string, Pick<JobTypeDefinition, 'concurrency' | 'needs'>>;
  /** The daemon's capacity; without it, needs are not accounted (every type is claimable). */
  resources?: ResourceLedger;
  /** Woken when a slot frees while the claim loop waits for one. */
  wakeup: Wakeup;
  /** Start a job in a free slot, with what it was given of the daemon's resources (if its type needs any). */
  start(job: JobDoc, allocation?: ResourceAllocation): void;
  /**
   * A job now waits claimed ahead, its resources taken: what it runs with is known, so its child may
   * be started ahead of it (an isolated job's: sandbox/prestart.ts).
   */
  ahead?(job: JobDoc, allocation?: ResourceAllocation): void;
  /** A job claimed ahead leaves without starting here (lost lease, shutdown). */
  dropped?(job: JobDoc): void;
  /** Queue membership, pauses and per-queue limits; without it every type is claimable. */
  queues?: QueueRules;
}

export class Slots implements ClaimSlots {
  private running = 0;
  /** Jobs held per type: running plus claimed ahead (so a job claimed ahead never waits for its type's slot). */
  private readonly perType = new Map<string, number>();
  /** Claimed ahead, in claim order, waiting for a free slot. */
  private ready: JobDoc[] = [];
  /** Moving average of a job's run time on this daemon (ms); undefined until one finished. */
  private avgRunMs: number | undefined;
  private blocked = false;
  private closed = false;
  /** What each job held here took of the resources (only jobs of types with needs). */
  private readonly allocations = new Map<JobId, ResourceAllocation>();

  constructor(private readonly o: SlotsOptions) {}

  free(): number {
    return this.o.concurrency + this.prefetch() - this.running - this.ready.length;
  }

  capacity(): number {
    return this.o.concurrency + this.prefetch();
  }

  /**
   * With jobs running, the claim loop waits until this many places are free, so claims go out in
   * batches: half the capacity, at most a batch. When fewer may be claimed ahead than that (jobs of
   * 50 ms to a second: isolated jobs), the ahead queue is refilled as soon as it has room, else a slot
   * that frees while the loop waits for a second one starts its next job only after a claim round trip.
   */
  claimAtLeast(): number {
    const half = Math.max(1, Math.min(this.o.claimBatchSize, Math.ceil(this.capacity() / 2)));
    const ahead = this.prefetch();
    return ahead > 0 ? Math.min(half, ahead) : half;
  }

  claimable(): ClaimableTypes {
    const c: ClaimableTypes = { types: [], slots: {}, limited: false };
    const q = this.o.queues;
    const queueFree: Record<string, number> = {};
    if (q) {
      for (const [queue, limit] of Object.entries(q.limits)) queueFree[queue] = limit;
      for (const [type, n] of this.perType) {
        const queue = q.queueOf[type] ?? type;
        if (queueFree[queue] !== undefined) queueFree[queue] -= n;
      }
      if (Object.keys(q.limits).length > 0) {
        c.limited = true;
        c.queueSlots = { queueOf: q.queueOf, free: queueFree };
      }
    }
    const ledger = this.o.resources;
    const needy = new Set<string>();
    for (const [name, def] of Object.entries(this.o.jobTypes)) {
      if (q) {
        const queue = q.queueOf[name] ?? name;
        if (!q.open(queue)) continue;
        if (queueFree[queue] !== undefined && queueFree[queue] <= 0) continue;
      }
      if (ledger && needsOf(def.needs)) {
        // A release of resources may make it claimable again.
        c.limited = true;
        if (!ledger.fits(def.needs)) continue;
        needy.add(name);
      }
      if (def.concurrency === undefined) {
        c.types.push(name);
        continue;
      }
      c.limited = true;
      const free = def.concurrency - (this.perType.get(name) ?? 0);
      if (free <= 0) continue;
      c.types.push(name);
      c.slots[name] = free;
    }
    if (ledger && needy.size > 0) {
      const admit = ledger.trial();
      const types = this.o.jobTypes;
      c.resources = { admit: (type) => admit(types[type]?.needs), types: needy };
    }
    return c;
  }

  setBlocked(blocked: boolean): void {
    this.blocked = blocked;
  }

  accept(job: JobDoc): void {
    this.hold(job.type, 1);
    // A claim takes only what fits, so this succeeds; a job that does not fit (a claim recovered
    // after the database came back) waits claimed ahead until a release makes room.
    const fits = this.allocate(job);
    if (fits && this.running < this.o.concurrency) return this.startNow(job);
    this.ready.push(job);
    if (fits) this.o.ahead?.(job, this.allocations.get(job._id));
  }

  /**
   * A job that ran here has finished (whatever its outcome: success, failure, timeout, crash, lost
   * lease): its resources and its slot go to the next jobs claimed ahead.
   */
  release(job: JobDoc, runMs: number): void {
    this.running--;
    this.hold(job.type, -1);
    this.deallocate(job._id);
    this.avgRunMs =
      this.avgRunMs === undefined ? runMs : this.avgRunMs + (runMs - this.avgRunMs) * RUN_MS_WEIGHT;
    if (!this.closed) this.startReady();
    if (this.blocked) this.o.wakeup.wake();
  }

  /** What the jobs held here took of the daemon's resources; null without a ledger. */
  resourcesUsed(): ResourceAllocation | null {
    return this.o.resources?.used() ?? null;
  }

  /** Jobs claimed ahead and not started: their leases are renewed with the running ones. */
  waiting(): readonly JobDoc[] {
    return this.ready;
  }

  /**
   * Take back a job claimed ahead (its lease was lost); undefined when it is not waiting here
   * (under `token`, when given).
   */
  drop(id: JobId, token?: string): JobDoc | undefined {
    const i = this.ready.findIndex((j) => j._id === id && (token === undefined || j.lease?.token === token));
    if (i < 0) return undefined;
    const [job] = this.ready.splice(i, 1);
    this.hold(job!.type, -1);
    this.deallocate(id);
    this.o.dropped?.(job!);
    return job;
  }

  /** Stopping: no more claiming ahead, and a freed slot no longer starts a job claimed ahead. */
  close(): void {
    this.closed = true;
  }

  /** Stopping, once nothing is claimed any more: the jobs claimed ahead, handed back to be requeued. */
  takeWaiting(): JobDoc[] {
    const jobs = this.ready;
    this.ready = [];
    for (const job of jobs) {
      this.hold(job.type, -1);
      this.deallocate(job._id);
      this.o.dropped?.(job);
    }
    return jobs;
  }

  /** How many jobs may be claimed ahead of a free slot now. */
  private prefetch(): number {
    const avg = this.avgRunMs;
    if (avg === undefined || this.closed) return 0;
    const byWait = Math.floor((this.o.concurrency * CLAIM_AHEAD_WAIT_MS) / Math.max(avg, 0.01));
    return Math.min(this.o.claimBatchSize, Math.max(byWait, avg <= ONE_AHEAD_MAX_RUN_MS ? 1 : 0));
  }

  private hold(type: string, n: number): void {
    this.perType.set(type, (this.perType.get(type) ?? 0) + n);
  }

  /** Start jobs claimed ahead, in claim order, while slots are free and their resources fit. */
  private startReady(): void {
    for (let i = 0; i < this.ready.length && this.running < this.o.concurrency;) {
      const job = this.ready[i]!;
      if (this.allocations.has(job._id) || this.allocate(job)) {
        this.ready.splice(i, 1);
        this.startNow(job);
      } else {
        i++;
      }
    }
  }

  /** Take the job's needs from the ledger; false when they do not fit now. */
  private allocate(job: JobDoc): boolean {
    const ledger = this.o.resources;
    const needs = this.o.jobTypes[job.type]?.needs;
    if (!ledger || !needsOf(needs)) return true;
    const a = ledger.take(needs);
    if (!a) return false;
    this.allocations.set(job._id, a);
    return true;
  }

  private deallocate(id: JobId): void {
    const a = this.allocations.get(id);
    if (!a) return;
    this.allocations.delete(id);
    this.o.resources!.give(a);
  }

  private startNow(job: JobDoc): void {
    this.running++;
    this.o.start(job, this.allocations.get(job._id));
  }
}
