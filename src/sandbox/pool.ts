/**
 * The sandbox's children under one bound: at no instant are more than `max` child processes alive,
 * pooled or isolated, counting those starting, busy, idle, and on their way out (asked to retire or
 * killed, not yet exited).
 *
 * A run that needs a process takes a slot; the slot is bound to the child it starts and freed only
 * when that child's exit has been seen. A run that finds no free slot waits in line; an idle pooled
 * child of the wrong kind is retired to make room, and a released child goes first to a waiting run
 * that can use it.
 *
 * Short jobs share children (PoolOptions.shared): once a handler's jobs are known to take little time,
 * a run that finds no idle child is queued on the least loaded child of its kind, as long as the
 * jobs queued there add up to no more than QUEUE_WAIT_MS. So a few children serve many short jobs
 * (their start-ups, not the jobs, were most of the children's CPU), while long jobs still get a child
 * each. A handler not measured yet waits for its first job (the probe) to end or to run PROBE_MS.
 * A handler's run time is the median of its last RUN_SAMPLES runs, so a stall now and then does not
 * make its jobs look long (a running mean did, and the pool started children for them). Children of a
 * kind above the shared count are extras: short jobs go to the others first, and an extra idle for
 * IDLE_RETIRE_MS is retired, so the pool returns to its shared size once long jobs or stalls are over.
 */
import { killChild, type Child, type Loader } from './processes.js';
import { PoolChild } from './poolChild.js';
import type { SandboxLogger } from './types.js';

const MAX_TIMER_MS = 2 ** 31 - 1;
/** Queue a run on a busy child only while what the child holds should take about this long at most. */
const QUEUE_WAIT_MS = 50;
/**
 * A handler's first job that runs this long shows its jobs are not short. Generous: on a loaded
 * machine a short job's result can take this long to arrive, and a run that gives up waiting starts a
 * child. Long jobs pay it once per handler, at their first jobs.
 */
const PROBE_MS = 1_000;
/** ... plus this when the job is the first of its handler in its child, which loads its modules. */
const LOAD_ALLOWANCE_MS = 2_000;
/** How often a run waiting on a probe rechecks while the probe's child has not started it yet. */
const UNSTARTED_RECHECK_MS = 100;
/** At most this many jobs held by one child. */
const MAX_HELD = 64;
/** A handler's run time is the median of this many of its latest runs. */
const RUN_SAMPLES = 16;
/** An extra child (above the shared count of its kind) idle this long is retired. */
const IDLE_RETIRE_MS = 1_000;

/** A handler's latest run times in pooled children, ms, and their median. */
interface RunTimes {
  samples: number[];
  /** Where the next sample goes once RUN_SAMPLES are kept. */
  next: number;
  median: number;
  /** Measured only on jobs that loaded the handler's modules (the first in their child). */
  provisional: boolean;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A place under the bound, held from the moment it is granted until the child bound to it exits. */
export interface Slot {
  /** Count `child` against the bound; the slot is freed when it exits. */
  bind(child: Child): void;
  /** Give back a slot that was never bound (no effect once bound). */
  free(): void;
}

/** What a run needs: a pooled child of a kind, or a slot for an isolated child it starts itself. */
export type Want = { pooled: true; loader: Loader; jobdHook: boolean; handler: string } | { pooled: false };

export type Grant = { kind: 'child'; pc: PoolChild } | { kind: 'slot'; slot: Slot };

interface Waiter {
  want: Want;
  resolve(g: Grant): void;
}

export interface PoolOptions {
  max: number;
  killGraceMs: number;
  log: SandboxLogger;
  /** Children per kind that short jobs are queued on (0: one job per child at a time). */
  shared?: number;
  /** A child is handed no more than this many jobs over its life. */
  maxJobsPerChild?: number;
}

function kindKey(loader: Loader, jobdHook: boolean): string {
  return `${loader}:${jobdHook}`;
}

export class ChildPool {
  /** Slots granted and not yet freed: an upper bound on live children at every instant. */
  private used = 0;
  private readonly pooled = new Set<PoolChild>();
  private idle: PoolChild[] = [];
  private readonly waiters: Waiter[] = [];
  /** Each handler's recent run times in pooled children. */
  private readonly runMs = new Map<string, RunTimes>();
  private probeTimer: NodeJS.Timeout | undefined;
  /** When each idle child became idle (performance.now()). */
  private readonly idleSince = new Map<PoolChild, number>();
  private idleTimer: NodeJS.Timeout | undefined;
  /** Pooled children granted a slot and not started yet, per kind (they count as children of it). */
  private readonly starting = new Map<string, number>();

  constructor(private readonly opts: PoolOptions) {
    if (!(opts.max >= 1)) throw new RangeError(`sandbox maxChildren must be at least 1, got ${opts.max}`);
  }

  get idleCount(): number {
    return this.idle.length;
  }

  get slotsUsed(): number {
    return this.used;
  }

  pooledChildren(): PoolChild[] {
    return [...this.pooled];
  }

  /**
   * Wait for what `want` needs. `cancel()` withdraws the request; a grant that raced with it is
   * given back (an idle child returns to the pool, a slot is freed).
   */
  acquire(want: Want): { granted: Promise<Grant>; cancel(): void } {
    let got: Grant | null = null;
    let cancelled = false;
    let resolveGranted!: (g: Grant) => void;
    const granted = new Promise<Grant>((r) => (resolveGranted = r));
    const waiter: Waiter = {
      want,
      resolve: (g) => {
        got = g;
        if (cancelled) this.giveBack(g);
        else resolveGranted(g);
      },
    };
    this.waiters.push(waiter);
    this.pump();
    return {
      granted,
      cancel: () => {
        if (cancelled) return;
        cancelled = true;
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        if (got) this.giveBack(got);
        this.pump();
      },
    };
  }

  /** Start a pooled child on a granted slot. */
  spawn(slot: Slot, loader: Loader, jobdHook: boolean): PoolChild {
    let pc: PoolChild;
    try {
      pc = new PoolChild(loader, jobdHook, (c, why, detail) => {
        this.opts.log.warn({ pid: c.pid, why, ...detail }, 'pooled child misbehaved; it will be recycled');
        if (c.state === 'idle') this.retire(c, why);
      });
    } catch (err) {
      slot.free();
      throw err;
    }
    slot.bind(pc.child);
    pc.runs = 1;
    this.pooled.add(pc);
    void pc.child.exited.then((exit) => {
      this.pooled.delete(pc);
      this.idle = this.idle.filter((x) => x !== pc);
      this.idleSince.delete(pc);
      this.opts.log.debug?.(
        { pid: pc.pid, code: exit.code, signal: exit.signal, jobs: pc.jobsRun },
        'pooled child exited',
      );
    });
    return pc;
  }

  /** A job ended on `pc`: keep it for the next job, or retire it (`why`) once it holds no other. */
  release(pc: PoolChild, why: string | null): void {
    pc.runs = Math.max(0, pc.runs - 1);
    if (pc.child.hasExited() || pc.state === 'retiring') return;
    if (why) pc.retireAfterJob(why);
    if (pc.runs > 0) {
      this.pump();
      return;
    }
    if (pc.unfit) {
      this.retire(pc, pc.unfit);
      return;
    }
    pc.state = 'idle';
    this.idle.push(pc);
    this.idleSince.set(pc, performance.now());
    this.pump();
    if (pc.state === 'idle') this.watchIdle();
  }

  /**
   * A job of `handler` took `ms` in a pooled child; `first`: the first of its handler in the child.
   * (Waiting runs are served by the release that follows.)
   */
  noteRun(handler: string, ms: number, first: boolean): void {
    const was = this.runMs.get(handler);
    if (!was || (was.provisional && !first)) {
      this.runMs.set(handler, { samples: [ms], next: 0, median: ms, provisional: first });
      return;
    }
    if (first) return;
    if (was.samples.length < RUN_SAMPLES) was.samples.push(ms);
    else {
      was.samples[was.next] = ms;
      was.next = (was.next + 1) % RUN_SAMPLES;
    }
    was.median = median(was.samples);
  }

  /** A handler's typical run time (the median of its recent runs), or undefined while not measured. */
  runEstimate(handler: string): number | undefined {
    const r = this.runMs.get(handler);
    return r && !r.provisional ? r.median : undefined;
  }

  /** Ask a child to leave; SIGTERM/SIGKILL if it does not within the grace period. Its slot frees on exit. */
  retire(pc: PoolChild, why: string): void {
    if (pc.state === 'retiring') return;
    pc.state = 'retiring';
    this.idle = this.idle.filter((x) => x !== pc);
    this.idleSince.delete(pc);
    this.opts.log.debug?.({ pid: pc.pid, why }, 'recycling pooled child');
    try {
      pc.child.send({ t: 'retire' });
    } catch {
      // channel already closed: the child is on its way out
    }
    const t = setTimeout(
      () => void killChild(pc.child, this.opts.killGraceMs),
      Math.min(this.opts.killGraceMs, MAX_TIMER_MS),
    );
    void pc.child.exited.then(() => clearTimeout(t));
  }

  /** Kill a busy child (timeout, abort, memory); resolves once it has exited. */
  kill(pc: PoolChild, graceMs: number): ReturnType<typeof killChild> {
    pc.state = 'retiring';
    return killChild(pc.child, graceMs);
  }

  /** A slot the caller binds to a child it starts; `kind`: a pooled child of that kind, counted as starting. */
  private newSlot(kind: string | null): Slot {
    this.used++;
    let freed = false;
    let bound = false;
    if (kind) this.starting.set(kind, (this.starting.get(kind) ?? 0) + 1);
    const started = (): void => {
      if (!kind) return;
      this.starting.set(kind, (this.starting.get(kind) ?? 1) - 1);
      kind = null;
    };
    const release = (): void => {
      if (freed) return;
      freed = true;
      this.used--;
      this.pump();
    };
    return {
      bind: (child) => {
        bound = true;
        const wasStarting = kind !== null;
        started();
        void child.exited.then(release);
        // Runs waiting because a child of this kind was starting look again, once its first job is on it.
        if (wasStarting) setImmediate(() => this.pump());
      },
      free: () => {
        started();
        if (!bound) release();
      },
    };
  }

  private giveBack(g: Grant): void {
    if (g.kind === 'slot') g.slot.free();
    else this.release(g.pc, null);
  }

  private takeIdle(loader: Loader, jobdHook: boolean, only?: ReadonlySet<PoolChild>): PoolChild | undefined {
    // Most recently used first: its caches are warm, and the others can age out.
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const pc = this.idle[i]!;
      if (only && !only.has(pc)) continue;
      // A child with the jobd resolve hook can run any handler; one without it only those that need none.
      if (pc.loader === loader && (pc.jobdHook || !jobdHook) && !pc.unfit && !pc.child.hasExited()) {
        this.idle.splice(i, 1);
        this.idleSince.delete(pc);
        pc.state = 'busy';
        pc.runs++;
        return pc;
      }
    }
    return undefined;
  }

  private fits(pc: PoolChild, loader: Loader, jobdHook: boolean): boolean {
    return (
      pc.loader === loader &&
      (pc.jobdHook || !jobdHook) &&
      pc.state !== 'retiring' &&
      !pc.unfit &&
      !pc.child.hasExited() &&
      pc.jobsAssigned < (this.opts.maxJobsPerChild ?? Infinity)
    );
  }

  /** Live children of a kind that can take jobs, and those about to start. */
  private kindCount(loader: Loader, jobdHook: boolean): number {
    let n = this.starting.get(kindKey(loader, jobdHook)) ?? 0;
    for (const pc of this.pooled) if (this.fits(pc, loader, jobdHook)) n++;
    return n;
  }

  /**
   * The children of a kind that are not extras: the `shared` oldest that can take jobs. Null when
   * there are no more than that (or jobs are not shared).
   */
  private kept(loader: Loader, jobdHook: boolean): Set<PoolChild> | null {
    const shared = this.opts.shared ?? 0;
    if (shared === 0) return null;
    const kept = new Set<PoolChild>();
    let extra = false;
    for (const pc of this.pooled) {
      if (!this.fits(pc, loader, jobdHook)) continue;
      if (kept.size < shared) kept.add(pc);
      else extra = true;
    }
    return extra ? kept : null;
  }

  /** Retire extra children once idle for IDLE_RETIRE_MS; checks again while any idle child may be one. */
  private watchIdle(): void {
    if (this.idleTimer || (this.opts.shared ?? 0) === 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      const now = performance.now();
      let waiting = false;
      // Oldest idle first: the most recently used keep their warm caches.
      for (const pc of [...this.idle]) {
        const kept = this.kept(pc.loader, pc.jobdHook);
        if (!kept || kept.has(pc)) continue;
        if (now - (this.idleSince.get(pc) ?? now) >= IDLE_RETIRE_MS)
          this.retire(pc, 'idle above the shared count');
        else waiting = true;
      }
      if (waiting) this.watchIdle();
    }, IDLE_RETIRE_MS);
    this.idleTimer.unref();
  }

  /** The least loaded busy child of the kind with room for a job that takes about `runMs`. */
  private takeQueue(
    loader: Loader,
    jobdHook: boolean,
    runMs: number,
    only?: ReadonlySet<PoolChild>,
  ): PoolChild | undefined {
    let best: PoolChild | undefined;
    for (const pc of this.pooled) {
      if (only && !only.has(pc)) continue;
      if (pc.state !== 'busy' || !this.fits(pc, loader, jobdHook)) continue;
      if (pc.runs >= MAX_HELD || pc.runs * runMs > QUEUE_WAIT_MS) continue;
      if (!best || pc.runs < best.runs) best = pc;
    }
    if (best) best.runs++;
    return best;
  }

  /** A first job of `handler` is on its way and has not yet run PROBE_MS (re-pumps when it will have). */
  private probing(handler: string): boolean {
    const now = performance.now();
    let soonest = Infinity;
    for (const pc of this.pooled) {
      const r = pc.running();
      if (!r || r.msg.handler !== handler || pc.child.hasExited()) continue;
      if (pc.readyAt === undefined || r.startedAt === undefined) {
        // Its clock has not started (the child is still starting): nothing else pumps when it does.
        soonest = Math.min(soonest, UNSTARTED_RECHECK_MS);
        continue;
      }
      const limit = PROBE_MS + (r.first ? LOAD_ALLOWANCE_MS : 0);
      const left = Math.max(r.startedAt, pc.readyAt) + limit - now;
      if (left > 0) soonest = Math.min(soonest, left);
    }
    if (soonest === Infinity) return false;
    if (!this.probeTimer) {
      this.probeTimer = setTimeout(() => {
        this.probeTimer = undefined;
        this.pump();
      }, soonest + 1);
    }
    return true;
  }

  /** For a pooled run with no idle child: a busy child to queue on, 'slot' to start one, or null to wait. */
  private place(want: Extract<Want, { pooled: true }>): PoolChild | 'slot' | null {
    const room = this.used < this.opts.max;
    const shared = this.opts.shared ?? 0;
    if (shared === 0) return room ? 'slot' : null;
    if (room && this.kindCount(want.loader, want.jobdHook) < shared) return 'slot';
    const known = this.runMs.get(want.handler);
    if (!known || known.provisional) {
      // Not measured: long jobs must not queue, short ones need not start children. A child of the
      // kind that is starting will take one of them.
      if ((this.starting.get(kindKey(want.loader, want.jobdHook)) ?? 0) > 0 || this.probing(want.handler)) {
        // Still counts as needing a slot when there is no room for one.
        return null;
      }
      return room ? 'slot' : null;
    }
    return this.takeQueue(want.loader, want.jobdHook, known.median) ?? (room ? 'slot' : null);
  }

  /**
   * An idle child for a pooled run, or for a short job a busy child to queue on when the kind has
   * extras: the kept children first (idle, then with room in their queue), so the extras go idle.
   */
  private takeChild(want: Extract<Want, { pooled: true }>): PoolChild | undefined {
    const runMs = this.runEstimate(want.handler);
    const kept = runMs !== undefined ? this.kept(want.loader, want.jobdHook) : null;
    if (!kept) return this.takeIdle(want.loader, want.jobdHook);
    return (
      this.takeIdle(want.loader, want.jobdHook, kept) ??
      this.takeQueue(want.loader, want.jobdHook, runMs!, kept) ??
      this.takeIdle(want.loader, want.jobdHook)
    );
  }

  /** Serve waiting runs in order; make room for those that need a new process. */
  private pump(): void {
    let needSlot = 0;
    for (let i = 0; i < this.waiters.length;) {
      const w = this.waiters[i]!;
      const pc = w.want.pooled ? this.takeChild(w.want) : undefined;
      const placed = pc ?? (w.want.pooled ? this.place(w.want) : this.used < this.opts.max ? 'slot' : null);
      if (placed === 'slot') {
        this.waiters.splice(i, 1);
        w.resolve({
          kind: 'slot',
          slot: this.newSlot(w.want.pooled ? kindKey(w.want.loader, w.want.jobdHook) : null),
        });
      } else if (placed) {
        this.waiters.splice(i, 1);
        w.resolve({ kind: 'child', pc: placed });
      } else {
        if (this.used >= this.opts.max) needSlot++;
        i++;
      }
    }
    // Each run still waiting for want of room needs a slot. Children already leaving will free some;
    // idle children nobody waiting can use are retired for the rest (oldest first).
    let leaving = 0;
    for (const pc of this.pooled) if (pc.state === 'retiring') leaving++;
    let short = needSlot - leaving;
    while (short > 0 && this.idle.length > 0) {
      this.retire(this.idle[0]!, 'making room for a job that needs another kind of child');
      short--;
    }
  }

  /** Kill every child; resolves when all are gone. */
  async close(extra: Child[]): Promise<void> {
    clearTimeout(this.probeTimer);
    clearTimeout(this.idleTimer);
    const all = [...[...this.pooled].map((pc) => pc.child), ...extra];
    this.idle = [];
    await Promise.all(all.map((c) => killChild(c, this.opts.killGraceMs)));
  }
}
