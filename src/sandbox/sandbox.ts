/**
 * createSandbox: runs job handlers in child processes, pooled or isolated (see types.ts).
 *
 * Every way an attempt can end funnels through `execute`, which waits for the first of: the
 * child's 'done' message, the child's exit, the timeout, an abort, or the memory limit. Whatever
 * had to be killed is dead (exit event received) before run() resolves. Children are counted
 * against SandboxOptions.maxChildren by the pool (pool.ts) from start to exit.
 */
import { statSync } from 'node:fs';
import { JobAbortedError, JobTimeoutError, UnserializableParamsError, serializeError } from '../errors.js';
import type { SerializedError } from '../types.js';
import { abortOf } from './abortSource.js';
import { JobLog, readFileTail } from './jobLog.js';
import { buildOutcome, plain, type Execution, type Sampled } from './outcome.js';
import { ChildPool, type Grant, type Want } from './pool.js';
import type { PoolChild } from './poolChild.js';
import { runHeld } from './heldRun.js';
import { sampleChild } from './memorySampler.js';
import { Prestarts, startIsolated, type PrestartSpec, type StartedChild } from './prestart.js';
import { SpawnHelper } from './spawnHelper.js';
import { loaderFor, sweepGroup, untilOrExit, killChild, type Child, type ExitInfo } from './processes.js';
import { hookedProgress, type ProgressCoalescer } from './progress.js';
import type { ChildMessage, DoneMessage, JobMessage } from './protocol.js';
import type {
  RunHooks,
  RunOutcome,
  RunRequest,
  Sandbox,
  SandboxLogger,
  SandboxOptions,
  SandboxStats,
} from './types.js';

/** Large enough for any result MongoDB can store (16 MiB of BSON); small enough to spare the daemon. */
const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

/** What every child is told about the job it runs. */
/**
 * `shared`: for a pooled child, which serves many jobs, so the job's env and cwd travel with it (an
 * isolated child is started with them). One object literal: a spread of a built message followed by
 * more properties gives every message a hidden class of its own (V8 11).
 */
function jobMessage(req: RunRequest, maxOutputBytes: number, shared = false): JobMessage {
  return {
    t: 'job',
    jobId: req.jobId,
    type: req.type,
    attempt: req.attempt,
    handler: req.handler,
    params: req.params,
    logFile: req.logFile,
    maxOutputBytes,
    ...(shared && req.env ? { env: req.env } : {}),
    ...(shared && req.cwd ? { cwd: req.cwd } : {}),
    ...(req.family ? { family: req.family } : {}),
    ...(req.hooks ? { hooks: req.hooks } : {}),
    ...(req.allocation ? { allocation: req.allocation } : {}),
    ...(req.checks ? { checks: req.checks } : {}),
  };
}

function hookBlocked(budgetMs: number): SerializedError {
  return {
    name: 'HookTimeoutError',
    code: 'JOBD_HOOK_TIMEOUT',
    message: `a lifecycle hook blocked the child past its bound of ${budgetMs} ms (worker.hookTimeoutMs); the child was killed`,
  };
}

/** A file's size; 0 when it is missing (a log file removed during the job). */
function sizeOf(file: string): number {
  return statSync(file, { throwIfNoEntry: false })?.size ?? 0;
}

/** How long trailing output of a dead child may take to arrive before the log is closed. */
const DRAIN_AFTER_EXIT_MS = 200;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One try at running the job, and whether it showed that the handler needs the jobd resolve hook. */
interface Try {
  outcome: RunOutcome;
  jobdUnresolved: DoneMessage['jobdUnresolved'];
}

const noopLogger: SandboxLogger = { info() {}, warn() {}, error() {} };

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

function abortMessage(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  if (typeof reason === 'string') return reason;
  return 'aborted by jobd';
}

function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((r) => (timer = setTimeout(r, ms)));
  return { promise, cancel: () => clearTimeout(timer) };
}

/** Milliseconds left until `deadline` (performance.now() based), for setTimeout. */
function msUntil(deadline: number): number {
  return Math.min(Math.max(0, deadline - performance.now()), MAX_TIMER_MS);
}

class SandboxImpl implements Sandbox {
  private readonly pool: ChildPool;
  private readonly isolated = new Set<Child>();
  private readonly prestarts: Prestarts;
  /** Starts isolated children when SandboxOptions.spawnHelper asks for it (spawnHelper.ts). */
  private readonly spawner: SpawnHelper | undefined;
  private readonly stoppers = new Set<() => void>();
  /** Handlers that import `jobd` and need children with the resolve hook (learnt on first failure). */
  private readonly needsJobdHook = new Set<string>();
  private closing = false;
  private readonly log: SandboxLogger;
  private readonly maxOutputBytes: number;
  /** pidusage keeps an open /proc fd per sampled pid until the entry expires; keep that short. */
  private readonly sampleMaxAge: number;

  constructor(private readonly opts: SandboxOptions) {
    this.log = opts.logger ?? noopLogger;
    this.sampleMaxAge = Math.max(1000, opts.sampleIntervalMs * 3);
    this.maxOutputBytes = opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
    this.pool = new ChildPool({
      max: opts.maxChildren,
      killGraceMs: opts.killGraceMs,
      log: this.log,
      shared: opts.sharedChildren ?? 0,
      maxJobsPerChild: opts.maxJobsPerChild,
    });
    this.spawner = opts.spawnHelper ? new SpawnHelper(this.log) : undefined;
    this.prestarts = new Prestarts({
      max: opts.prestart ?? 0,
      log: this.log,
      hookFor: (handler) => this.needsJobdHook.has(handler),
      ...(this.spawner ? { spawner: this.spawner } : {}),
    });
  }

  prestart(spec: PrestartSpec): void {
    if (!this.closing) this.prestarts.add(spec);
  }

  discard(jobId: string): void {
    this.prestarts.discard(jobId);
  }

  stats(): SandboxStats {
    // A run still tidying up after its child exited (log tail, drain) no longer counts it.
    let children = 0;
    let busy = 0;
    for (const pc of this.pool.pooledChildren()) {
      if (pc.child.hasExited()) continue;
      children++;
      if (pc.state === 'busy') busy++;
    }
    for (const c of this.isolated) {
      if (c.hasExited()) continue;
      children++;
      busy++;
    }
    // Children started ahead of their jobs are alive and run nothing yet.
    children += this.prestarts.alive;
    return { children, idle: this.pool.idleCount, busy };
  }

  async run(req: RunRequest, given: RunHooks): Promise<RunOutcome> {
    if (this.closing) throw new Error('sandbox is closed');
    // From here on, the abort is listened to through `hooks.abort` only.
    const abort = abortOf(given);
    const hooks: RunHooks = abort
      ? { onProgress: given.onProgress, abort }
      : { onProgress: given.onProgress };
    if (abort?.aborted) {
      const error = plain(
        new JobAbortedError(`job aborted before it started: ${abortMessage(abort.reason)}`),
      );
      return { status: 'failed', reason: 'aborted', error, resources: { wallMs: 0 }, logTail: '' };
    }
    const t0 = performance.now();
    // The timeout covers the whole run: waiting for a child, its start-up, and a second try.
    const deadline = Number.isFinite(req.timeoutMs) ? t0 + Math.max(0, req.timeoutMs) : Infinity;
    const hook = this.needsJobdHook.has(req.handler);
    const first = await this.runOnce(req, hooks, t0, deadline, hook);
    if (!first.jobdUnresolved || hook) return first.outcome;
    this.needsJobdHook.add(req.handler);
    this.log.info(
      { jobId: req.jobId, handler: req.handler },
      'handler imports jobd: using children with the jobd resolve hook',
    );
    // Its module graph imports `jobd`: the failed load ran none of its code (ES modules are linked
    // before any of them runs), so the attempt starts over. An import() in the handler's body has
    // run code already: that attempt fails as it did, and the next ones get the hook.
    if (first.jobdUnresolved === 'run') return first.outcome;
    return (await this.runOnce(req, hooks, t0, deadline, true)).outcome;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const stop of [...this.stoppers]) stop();
    await Promise.all([this.prestarts.close(), this.pool.close([...this.isolated])]);
    this.spawner?.close();
  }

  /** The spawn helper's pid while it runs (tests). */
  get spawnHelperPid(): number | undefined {
    return this.spawner?.pid;
  }

  private runOnce(
    req: RunRequest,
    hooks: RunHooks,
    t0: number,
    deadline: number,
    hook: boolean,
  ): Promise<Try> {
    return req.mode === 'isolated'
      ? this.runIsolated(req, hooks, t0, deadline, hook)
      : this.runPooled(req, hooks, t0, deadline, hook);
  }

  /** Wait for a child (or a slot) under the bound; the timeout, an abort or close() end the wait. */
  private waitForChild(
    want: Want,
    req: RunRequest,
    hooks: RunHooks,
    deadline: number,
  ): Promise<{ grant: Grant } | { ex: Execution }> {
    const { granted, cancel } = this.pool.acquire(want);
    return new Promise((resolve) => {
      let ended = false;
      const end = (r: { grant: Grant } | { ex: Execution }): void => {
        if (ended) return;
        ended = true;
        clearTimeout(timer);
        offAbort?.();
        this.stoppers.delete(stop);
        if ('ex' in r) cancel();
        resolve(r);
      };
      const timer =
        deadline === Infinity
          ? undefined
          : setTimeout(
              () => end({ ex: { kind: 'kill', reason: 'timeout', error: this.timeoutError(req) } }),
              msUntil(deadline),
            );
      const onAbort = (): void => end({ ex: this.abortEx(hooks.abort?.reason) });
      const offAbort = hooks.abort?.onAbort(onAbort);
      const stop = (): void => end({ ex: this.abortEx('the sandbox is closing') });
      this.stoppers.add(stop);
      if (hooks.abort?.aborted) onAbort();
      // A grant racing with close(): the child would outlive the sandbox.
      void granted.then((grant) =>
        end(this.closing ? { ex: this.abortEx('the sandbox is closing') } : { grant }),
      );
    });
  }

  private timeoutError(req: RunRequest): SerializedError {
    return plain(new JobTimeoutError(req.timeoutMs));
  }

  private abortEx(reason: unknown): Extract<Execution, { kind: 'kill' }> {
    return {
      kind: 'kill',
      reason: 'aborted',
      error: plain(new JobAbortedError(`job aborted: ${abortMessage(reason)}`)),
    };
  }

  // ---- pooled -------------------------------------------------------------------------------

  private async runPooled(
    req: RunRequest,
    hooks: RunHooks,
    t0: number,
    deadline: number,
    hook: boolean,
  ): Promise<Try> {
    const loader = loaderFor(req.handler);
    const want: Want = { pooled: true, loader, jobdHook: hook, handler: req.handler };
    const waited = await this.waitForChild(want, req, hooks, deadline);
    if ('ex' in waited) {
      return {
        outcome: buildOutcome(waited.ex, undefined, t0, {}, null, 0, undefined, ''),
        jobdUnresolved: undefined,
      };
    }
    const g = waited.grant;
    const pc = g.kind === 'child' ? g.pc : this.pool.spawn(g.slot, loader, hook);
    const jobLog = new JobLog(req.logFile, req.logTailBytes, (err) =>
      this.log.warn({ jobId: req.jobId, file: req.logFile, err: err.message }, 'cannot write job log file'),
    );
    const msg = jobMessage(req, this.maxOutputBytes, true);
    const { ex, held, sampled, taint, cpuBaseMs } = await runHeld(pc, msg, jobLog, req, hooks, {
      log: this.log,
      sampleIntervalMs: this.opts.sampleIntervalMs,
      sampleMaxAge: this.sampleMaxAge,
      stoppers: this.stoppers,
      timeoutError: (r) => this.timeoutError(r),
      abortEx: (reason) => this.abortEx(reason),
      hookBlocked,
    });
    let killed: ExitInfo | undefined;
    if (ex.kind === 'done') {
      await untilOrExit(pc.child, held.untilEnded());
    } else if (ex.kind === 'kill') {
      pc.markUnfit(ex.reason);
      killed = await this.pool.kill(pc, req.killGraceMs);
    } else if (ex.kind === 'exit') {
      pc.markUnfit('exited during a job');
    }
    if (pc.child.hasExited()) await pc.drained(DRAIN_AFTER_EXIT_MS);
    pc.leave(held);
    await jobLog.close();

    if (ex.kind === 'done') {
      const d = ex.done;
      if (d.runMs !== undefined) this.pool.noteRun(req.handler, d.runMs, held.first);
      if (d.taint) pc.markUnfit('unhandled rejection', { error: d.taint });
      if (d.hookAbandoned) pc.markUnfit('a lifecycle hook outlived its bound');
      // Its module cache now holds the failed module graph: a fresh child loads it anew.
      if (d.jobdUnresolved === 'load') pc.retireAfterJob('the handler needs the jobd resolve hook');
      else if (d.error?.code === 'JOBD_HANDLER_LOAD') pc.markUnfit('a handler module failed to load');
      this.pool.release(pc, this.recycleReason(pc));
      return {
        outcome: buildOutcome(
          ex,
          undefined,
          t0,
          sampled,
          taint,
          cpuBaseMs ?? 0,
          d.usage.rssBytes,
          jobLog.tail(),
        ),
        jobdUnresolved: d.jobdUnresolved,
      };
    }
    this.pool.release(pc, this.recycleReason(pc));
    return {
      outcome: buildOutcome(
        ex,
        killed,
        t0,
        sampled,
        taint,
        cpuBaseMs ?? pc.cpuBaseMs ?? 0,
        undefined,
        jobLog.tail(),
      ),
      jobdUnresolved: undefined,
    };
  }

  /** Why `pc` must not run another job, or null. */
  private recycleReason(pc: PoolChild): string | null {
    const o = this.opts;
    if (pc.unfit) return pc.unfit;
    if (this.closing) return 'sandbox closing';
    if (pc.jobsAssigned >= o.maxJobsPerChild) return `was handed ${pc.jobsAssigned} jobs`;
    if (pc.lastRssBytes > o.maxRssBytes) return `RSS ${mib(pc.lastRssBytes)} above ${mib(o.maxRssBytes)}`;
    return null;
  }

  // ---- isolated -----------------------------------------------------------------------------

  private async runIsolated(
    req: RunRequest,
    hooks: RunHooks,
    t0: number,
    deadline: number,
    hook: boolean,
  ): Promise<Try> {
    const waited = await this.waitForChild({ pooled: false }, req, hooks, deadline);
    if ('ex' in waited) {
      this.prestarts.discard(req.jobId);
      return {
        outcome: buildOutcome(waited.ex, undefined, t0, {}, null, 0, undefined, ''),
        jobdUnresolved: undefined,
      };
    }
    if (waited.grant.kind !== 'slot') throw new Error('isolated run was granted a pooled child');
    const slot = waited.grant.slot;
    let started: StartedChild | null = null;
    try {
      // Started ahead (its job was claimed ahead of a free slot): only the job is left to send.
      // Otherwise synchronous on purpose: from a freed slot to the spawn nothing yields to the event
      // loop, so the daemon's other work (the last job's settlement, the next claim, an in-process
      // server's replies) waits until the child is on its way, not the reverse.
      started = this.prestarts.take(req.jobId, req, hook) ?? startIsolated(req, hook, this.spawner);
      // Bound at once: from here its slot is freed by its exit, whatever happens next.
      slot.bind(started.child);
    } catch (err) {
      // Not started: the slot is free again (free() does nothing once bound). Started: it is killed.
      slot.free();
      if (started) await killChild(started.child, req.killGraceMs);
      throw err;
    }
    const { child, startSize } = started;
    this.isolated.add(child);
    // An isolated child got the job's env and cwd at spawn.
    const msg = jobMessage(req, this.maxOutputBytes);
    try {
      const { ex, sampled, taint } = await this.execute(child, req, hooks, deadline, () => child.send(msg));
      let killed: ExitInfo | undefined;
      if (ex.kind === 'kill' || ex.kind === 'unsendable') {
        killed = await killChild(child, req.killGraceMs);
      } else if (ex.kind === 'done' && !child.hasExited()) {
        // It exits by itself right after 'done'; a stuck exit gets the usual treatment.
        const grace = delay(req.killGraceMs);
        const exited = await Promise.race([child.exited.then(() => true), grace.promise.then(() => false)]);
        grace.cancel();
        if (!exited) await killChild(child, req.killGraceMs);
      }
      sweepGroup(child);
      let tail = '';
      try {
        // Most attempts write nothing: one synchronous stat then, so the next job's child is spawned
        // in the same turn of the event loop as this one's exit.
        if (req.logTailBytes > 0 && sizeOf(req.logFile) > startSize)
          tail = await readFileTail(req.logFile, startSize, req.logTailBytes);
      } catch (err) {
        this.log.warn(
          { jobId: req.jobId, file: req.logFile, err: (err as Error).message },
          'cannot read job log tail',
        );
      }
      const rss = ex.kind === 'done' ? ex.done.usage.maxRssBytes : undefined;
      return {
        outcome: buildOutcome(ex, ex.kind === 'kill' ? killed : undefined, t0, sampled, taint, 0, rss, tail),
        jobdUnresolved: ex.kind === 'done' ? ex.done.jobdUnresolved : undefined,
      };
    } finally {
      this.isolated.delete(child);
    }
  }

  // ---- shared -------------------------------------------------------------------------------

  /** Wait for the first thing that ends the attempt; progress flows to hooks meanwhile. */
  private execute(
    child: Child,
    req: RunRequest,
    hooks: RunHooks,
    deadline: number,
    send: () => void,
  ): Promise<{ ex: Execution; sampled: Sampled; taint: SerializedError | null }> {
    const sampled: Sampled = {};
    let taint: SerializedError | null = null;
    // Made on the first report: most jobs report no progress.
    let progress: ProgressCoalescer | undefined;
    const newProgress = (): ProgressCoalescer =>
      hookedProgress(
        req.progressIntervalMs,
        (p, m) => hooks.onProgress(p, m),
        (w) => this.log.warn({ jobId: req.jobId, ...w }, 'onProgress hook threw'),
      );

    return new Promise((resolve) => {
      let ended = false;
      const finish = (ex: Execution): void => {
        if (ended) return;
        ended = true;
        clearTimeout(timeout);
        clearInterval(sampler);
        offExit();
        offMessage();
        offAbort?.();
        this.stoppers.delete(stop);
        progress?.close();
        resolve({ ex, sampled, taint });
      };

      const onMessage = (m: ChildMessage): void => {
        if (m.t === 'progress') (progress ??= newProgress()).push(m.percent, m.message);
        else if (m.t === 'taint') taint = m.error;
        else if (m.t === 'done') finish({ kind: 'done', done: m });
        else if (m.t === 'hooks') {
          // The handler settled: the job's timeout gives way to the hook's bound (the child enforces
          // it; this catches a hook that blocks the child's event loop).
          clearTimeout(timeout);
          timeout = setTimeout(
            () => finish({ kind: 'kill', reason: 'timeout', error: hookBlocked(m.budgetMs) }),
            Math.min(m.budgetMs + Math.max(1_000, req.killGraceMs), MAX_TIMER_MS),
          );
        }
      };
      const offMessage = child.onMessage(onMessage);
      const offExit = child.onExit((exit) => finish({ kind: 'exit', exit }));

      // A non-finite timeout means none.
      let timeout =
        deadline === Infinity
          ? undefined
          : setTimeout(
              () => finish({ kind: 'kill', reason: 'timeout', error: this.timeoutError(req) }),
              msUntil(deadline),
            );

      const onAbort = (): void => finish(this.abortEx(hooks.abort?.reason));
      const offAbort = hooks.abort?.onAbort(onAbort);
      // Aborted while the child was being started: the listener above will never fire.
      if (hooks.abort?.aborted) onAbort();

      const stop = (): void => finish(this.abortEx('the sandbox is closing'));
      this.stoppers.add(stop);

      const sampler = sampleChild({
        pid: () => child.pid,
        live: () => !ended,
        intervalMs: this.opts.sampleIntervalMs,
        maxAgeMs: this.sampleMaxAge,
        limitBytes: req.memoryLimitBytes,
        sampled,
        over: (err) => finish({ kind: 'kill', reason: 'memory', error: plain(err) }),
      });

      if (ended) return;
      try {
        send();
      } catch (err) {
        finish({
          kind: 'unsendable',
          error: plain(new UnserializableParamsError(serializeError(err).message)),
        });
      }
    });
  }
}

export function createSandbox(options: SandboxOptions): Sandbox {
  return new SandboxImpl(options);
}
