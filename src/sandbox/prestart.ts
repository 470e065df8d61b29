/**
 * Isolated children started ahead of their jobs. A job claimed ahead of a free slot (the daemon claims
 * one ahead while short jobs run: worker/slots.ts) already has everything its child needs to start:
 * the handler, the environment and the log file. Its child is started then and waits, blocked reading
 * fd 3 before it has loaded anything of the handler, until the job is sent when a slot frees. So the
 * start-up of a Node process (~100 ms) overlaps the running job instead of following it.
 *
 * At most `max` such children are alive at once, on top of the sandbox's maxChildren, counting those
 * discarded and not yet exited; the jobs beyond wait in claim order and get their child as places free.
 * A child started ahead has run no code of its job, so discarding one (its job was dropped, requeued at
 * shutdown, or ended without running) kills it at once with SIGKILL, and one that no longer fits its
 * job when the job runs (another environment, the jobd resolve hook learnt meanwhile) is discarded and
 * the run starts a child as usual.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { ensureDir } from './jobLog.js';
import { killChild, loaderFor, startChild, type Child } from './processes.js';
import type { SpawnHelper } from './spawnHelper.js';
import type { SandboxLogger } from './types.js';

/** What an isolated child is started with; a run uses a child started ahead only if all of it matches. */
export interface IsolatedSpawn {
  handler: string;
  logFile: string;
  env?: Record<string, string>;
  cwd?: string;
}

export interface PrestartSpec extends IsolatedSpawn {
  jobId: string;
}

/** A started isolated child and the size of its log file before it (where this attempt's output begins). */
export interface StartedChild {
  child: Child;
  startSize: number;
}

/**
 * Start an isolated child writing into its job's log file. Synchronous: from a freed slot to the spawn
 * nothing yields to the event loop (see Sandbox.runIsolated).
 */
export function startIsolated(s: IsolatedSpawn, jobdHook: boolean, spawner?: SpawnHelper): StartedChild {
  ensureDir(s.logFile);
  // The child writes straight into the log file: its output never passes through the daemon. Opened
  // here with the spawn helper too: a log file that cannot be written fails the start at once.
  const fd = openSync(s.logFile, 'a');
  try {
    const startSize = fstatSync(fd).size;
    const child = startChild({
      mode: 'isolated',
      loader: loaderFor(s.handler),
      jobdHook,
      output: fd,
      env: s.env ? { ...process.env, ...s.env } : process.env,
      ...(s.cwd ? { cwd: s.cwd } : {}),
      ...(spawner ? { helper: { spawner, logFile: s.logFile } } : {}),
    });
    return { child, startSize };
  } finally {
    closeSync(fd);
  }
}

function sameEnv(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => a[k] === b[k]);
}

function fits(s: IsolatedSpawn, hook: boolean, req: IsolatedSpawn, reqHook: boolean): boolean {
  return (
    hook === reqHook &&
    s.handler === req.handler &&
    s.logFile === req.logFile &&
    s.cwd === req.cwd &&
    sameEnv(s.env, req.env)
  );
}

interface Entry {
  spec: PrestartSpec;
  hook: boolean;
  started?: StartedChild;
  /** Stops counting the started child (handed over, or exited); idempotent. */
  uncount?: () => void;
  /** Its start threw: the run starts a child itself and reports what goes wrong. */
  failed?: boolean;
}

export interface PrestartOptions {
  max: number;
  log: SandboxLogger;
  /** Whether the handler's children need the jobd resolve hook (learnt by the sandbox). */
  hookFor(handler: string): boolean;
  /** Starts the children, when the sandbox has one (spawnHelper.ts). */
  spawner?: SpawnHelper;
}

export class Prestarts {
  /** Jobs announced and not yet run or discarded, in claim order. */
  private readonly entries = new Map<string, Entry>();
  /** Children started here and not handed over: alive, or killed and not yet exited. */
  private live = 0;
  private closed = false;
  private readonly dying = new Set<Promise<unknown>>();

  constructor(private readonly o: PrestartOptions) {}

  /** Children started ahead and alive (or on their way out). */
  get alive(): number {
    return this.live;
  }

  /** A job that will run isolated here once a slot frees: its child starts as soon as there is room. */
  add(spec: PrestartSpec): void {
    if (this.closed || this.o.max < 1 || this.entries.has(spec.jobId)) return;
    this.entries.set(spec.jobId, { spec, hook: this.o.hookFor(spec.handler) });
    this.pump();
  }

  /**
   * The child started ahead for this run, handed over (from now on the caller counts it), or null:
   * none was started, it died, or it does not fit the run (then it is killed).
   */
  take(jobId: string, req: IsolatedSpawn, hook: boolean): StartedChild | null {
    const e = this.entries.get(jobId);
    if (!e) return null;
    this.entries.delete(jobId);
    const s = e.started;
    if (!s) return null;
    if (s.child.hasExited() || !fits(e.spec, e.hook, req, hook)) {
      if (!s.child.hasExited())
        this.o.log.info({ jobId, pid: s.child.pid }, 'child started ahead does not fit its job: replaced');
      this.kill(s.child);
      return null;
    }
    e.uncount!();
    return s;
  }

  /** The job will not run here (or ran without it): its child, if started, is killed. */
  discard(jobId: string): void {
    const e = this.entries.get(jobId);
    if (!e) return;
    this.entries.delete(jobId);
    if (e.started) this.kill(e.started.child);
  }

  /** No more starts; every child started ahead is killed; resolves once all have exited. */
  async close(): Promise<void> {
    this.closed = true;
    for (const e of this.entries.values()) if (e.started) this.kill(e.started.child);
    this.entries.clear();
    await Promise.all([...this.dying]);
  }

  private kill(child: Child): void {
    // Nothing of its job ran in it: no grace.
    const p = killChild(child, 0);
    this.dying.add(p);
    void p.then(() => this.dying.delete(p));
  }

  private pump(): void {
    if (this.closed) return;
    for (const e of this.entries.values()) {
      if (this.live >= this.o.max) return;
      if (e.started || e.failed) continue;
      let s: StartedChild;
      try {
        s = startIsolated(e.spec, e.hook, this.o.spawner);
      } catch (err) {
        e.failed = true;
        this.o.log.warn(
          { jobId: e.spec.jobId, err: (err as Error).message },
          'cannot start a child ahead of its job; the job starts one when it runs',
        );
        continue;
      }
      e.started = s;
      this.live++;
      let counted = true;
      let off = (): void => {};
      const uncount = (): void => {
        if (!counted) return;
        counted = false;
        off();
        this.live--;
        // After the caller's synchronous part: a child handed over gets its job before the next spawn.
        queueMicrotask(() => this.pump());
      };
      off = s.child.onExit(uncount);
      e.uncount = uncount;
    }
  }
}
