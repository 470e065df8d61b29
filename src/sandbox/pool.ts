/**
 * The sandbox's children under one bound: at no instant are more than `max` child processes alive,
 * pooled or isolated, counting those starting, busy, idle, and on their way out (asked to retire or
 * killed, not yet exited).
 *
 * A run that needs a process takes a slot; the slot is bound to the child it starts and freed only
 * when that child's exit has been seen. A run that finds no free slot waits in line; an idle pooled
 * child of the wrong kind is retired to make room, and a released child goes first to a waiting run
 * that can use it.
 */
import { killChild, type Child, type Loader } from './processes.js';
import { PoolChild } from './poolChild.js';
import type { SandboxLogger } from './types.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

/** A place under the bound, held from the moment it is granted until the child bound to it exits. */
export interface Slot {
  /** Count `child` against the bound; the slot is freed when it exits. */
  bind(child: Child): void;
  /** Give back a slot that was never bound (no effect once bound). */
  free(): void;
}

/** What a run needs: a pooled child of a kind, or a slot for an isolated child it starts itself. */
export type Want = { pooled: true; loader: Loader; jobdHook: boolean } | { pooled: false };

export type Grant = { kind: 'child'; pc: PoolChild } | { kind: 'slot'; slot: Slot };

interface Waiter {
  want: Want;
  resolve(g: Grant): void;
}

export interface PoolOptions {
  max: number;
  killGraceMs: number;
  log: SandboxLogger;
}

export class ChildPool {
  /** Slots granted and not yet freed: an upper bound on live children at every instant. */
  private used = 0;
  private readonly pooled = new Set<PoolChild>();
  private idle: PoolChild[] = [];
  private readonly waiters: Waiter[] = [];

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
    this.pooled.add(pc);
    void pc.child.exited.then((exit) => {
      this.pooled.delete(pc);
      this.idle = this.idle.filter((x) => x !== pc);
      this.opts.log.debug?.(
        { pid: pc.pid, code: exit.code, signal: exit.signal, jobs: pc.jobsRun },
        'pooled child exited',
      );
    });
    return pc;
  }

  /** A job ended on `pc`: keep it for the next job, or retire it (`why`). */
  release(pc: PoolChild, why: string | null): void {
    if (pc.child.hasExited() || pc.state === 'retiring') return;
    if (why) {
      this.retire(pc, why);
      return;
    }
    pc.state = 'idle';
    this.idle.push(pc);
    this.pump();
  }

  /** Ask a child to leave; SIGTERM/SIGKILL if it does not within the grace period. Its slot frees on exit. */
  retire(pc: PoolChild, why: string): void {
    if (pc.state === 'retiring') return;
    pc.state = 'retiring';
    this.idle = this.idle.filter((x) => x !== pc);
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

  /** A slot the caller binds to a child it starts. */
  private newSlot(): Slot {
    this.used++;
    let freed = false;
    let bound = false;
    const release = (): void => {
      if (freed) return;
      freed = true;
      this.used--;
      this.pump();
    };
    return {
      bind: (child) => {
        bound = true;
        void child.exited.then(release);
      },
      free: () => {
        if (!bound) release();
      },
    };
  }

  private giveBack(g: Grant): void {
    if (g.kind === 'slot') g.slot.free();
    else this.release(g.pc, null);
  }

  private takeIdle(loader: Loader, jobdHook: boolean): PoolChild | undefined {
    // Most recently used first: its caches are warm, and the others can age out.
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const pc = this.idle[i]!;
      // A child with the jobd resolve hook can run any handler; one without it only those that need none.
      if (pc.loader === loader && (pc.jobdHook || !jobdHook) && !pc.unfit && !pc.child.hasExited()) {
        this.idle.splice(i, 1);
        pc.state = 'busy';
        return pc;
      }
    }
    return undefined;
  }

  /** Serve waiting runs in order; make room for those that need a new process. */
  private pump(): void {
    for (let i = 0; i < this.waiters.length;) {
      const w = this.waiters[i]!;
      const pc = w.want.pooled ? this.takeIdle(w.want.loader, w.want.jobdHook) : undefined;
      if (pc) {
        this.waiters.splice(i, 1);
        w.resolve({ kind: 'child', pc });
      } else if (this.used < this.opts.max) {
        this.waiters.splice(i, 1);
        w.resolve({ kind: 'slot', slot: this.newSlot() });
      } else {
        i++;
      }
    }
    // Each run still waiting needs a slot. Children already leaving will free some; idle children
    // nobody waiting can use are retired for the rest (oldest first).
    let leaving = 0;
    for (const pc of this.pooled) if (pc.state === 'retiring') leaving++;
    let short = this.waiters.length - leaving;
    while (short > 0 && this.idle.length > 0) {
      this.retire(this.idle[0]!, 'making room for a job that needs another kind of child');
      short--;
    }
  }

  /** Kill every child; resolves when all are gone. */
  async close(extra: Child[]): Promise<void> {
    const all = [...[...this.pooled].map((pc) => pc.child), ...extra];
    this.idle = [];
    await Promise.all(all.map((c) => killChild(c, this.opts.killGraceMs)));
  }
}
