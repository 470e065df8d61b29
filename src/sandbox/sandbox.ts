/**
 * createSandbox: runs job handlers in child processes, pooled or isolated (see types.ts).
 *
 * Every way an attempt can end funnels through `execute`, which waits for the first of: the
 * child's 'done' message, the child's exit, the timeout, an abort, or the memory limit. Whatever
 * had to be killed is dead (exit event received) before run() resolves.
 */
import { open } from 'node:fs/promises';
import pidusage from 'pidusage';
import { JobTimeoutError, serializeError } from '../errors.js';
import type { JobResources, SerializedError } from '../types.js';
import { JobLog, ensureDir, readFileTail } from './jobLog.js';
import { PoolChild } from './poolChild.js';
import {
  killChild,
  loaderFor,
  startChild,
  sweepGroup,
  untilOrExit,
  type Child,
  type ExitInfo,
} from './processes.js';
import { ProgressCoalescer } from './progress.js';
import type { ChildMessage, DoneMessage, JobMessage } from './protocol.js';
import type {
  FailureReason,
  RunHooks,
  RunOutcome,
  RunRequest,
  Sandbox,
  SandboxLogger,
  SandboxOptions,
  SandboxStats,
} from './types.js';

/** What every child is told about the job it runs. */
function jobMessage(req: RunRequest): JobMessage {
  return {
    t: 'job',
    jobId: req.jobId,
    type: req.type,
    attempt: req.attempt,
    handler: req.handler,
    params: req.params,
    logFile: req.logFile,
  };
}

/** How long trailing output of a dead child may take to arrive before the log is closed. */
const DRAIN_AFTER_EXIT_MS = 200;
const MAX_TIMER_MS = 2 ** 31 - 1;

type Execution =
  | { kind: 'done'; done: DoneMessage }
  | { kind: 'exit'; exit: ExitInfo }
  | { kind: 'kill'; reason: 'timeout' | 'aborted' | 'memory'; error: SerializedError }
  | { kind: 'unsendable'; error: SerializedError };

interface Sampled {
  peakRssBytes?: number;
  lastCpuMs?: number;
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

function crashError(exit: ExitInfo, taint: SerializedError | null, beforeDone: boolean): SerializedError {
  let message: string;
  if (exit.spawnError) message = `could not start the child process: ${exit.spawnError.message}`;
  else if (exit.signal) message = `child process was killed by signal ${exit.signal}`;
  else message = `child process exited with code ${exit.code}`;
  if (beforeDone && !exit.spawnError) message += ' before the job finished';
  if (taint) message += ` (uncaught exception: ${taint.name}: ${taint.message})`;
  return {
    name: 'ChildCrashError',
    code: 'JOBD_CHILD_CRASH',
    message,
    ...(taint?.stack ? { stack: taint.stack } : {}),
  };
}

function delay(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((r) => (timer = setTimeout(r, ms)));
  return { promise, cancel: () => clearTimeout(timer) };
}

class SandboxImpl implements Sandbox {
  private readonly pool = new Set<PoolChild>();
  private idle: PoolChild[] = [];
  private readonly isolated = new Set<Child>();
  private readonly stoppers = new Set<() => void>();
  private closing = false;
  private readonly log: SandboxLogger;
  /** pidusage keeps an open /proc fd per sampled pid until the entry expires; keep that short. */
  private readonly sampleMaxAge: number;

  constructor(private readonly opts: SandboxOptions) {
    this.log = opts.logger ?? noopLogger;
    this.sampleMaxAge = Math.max(1000, opts.sampleIntervalMs * 3);
  }

  stats(): SandboxStats {
    let busy = this.isolated.size;
    for (const pc of this.pool) if (pc.state === 'busy') busy++;
    return { children: this.pool.size + this.isolated.size, idle: this.idle.length, busy };
  }

  async run(req: RunRequest, hooks: RunHooks): Promise<RunOutcome> {
    if (this.closing) throw new Error('sandbox is closed');
    if (hooks.signal?.aborted) {
      return {
        status: 'failed',
        reason: 'aborted',
        error: {
          name: 'JobAbortedError',
          code: 'JOBD_ABORTED',
          message: `job aborted before it started: ${abortMessage(hooks.signal.reason)}`,
        },
        resources: { wallMs: 0 },
        logTail: '',
      };
    }
    return req.mode === 'isolated' ? this.runIsolated(req, hooks) : this.runPooled(req, hooks);
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const stop of [...this.stoppers]) stop();
    const all = [...[...this.pool].map((pc) => pc.child), ...this.isolated];
    await Promise.all(all.map((c) => killChild(c, this.opts.killGraceMs)));
    this.idle = [];
  }

  // ---- pooled -------------------------------------------------------------------------------

  private acquire(loader: PoolChild['loader']): PoolChild {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const pc = this.idle[i]!;
      if (pc.loader === loader && !pc.unfit && !pc.child.hasExited()) {
        this.idle.splice(i, 1);
        pc.state = 'busy';
        return pc;
      }
    }
    const pc = new PoolChild(loader, (c, why, detail) => {
      this.log.warn({ pid: c.pid, why, ...detail }, 'pooled child misbehaved; it will be recycled');
      if (c.state === 'idle') this.retire(c, why);
    });
    this.pool.add(pc);
    void pc.child.exited.then((exit) => {
      this.pool.delete(pc);
      this.idle = this.idle.filter((x) => x !== pc);
      this.log.debug?.(
        { pid: pc.pid, code: exit.code, signal: exit.signal, jobs: pc.jobsRun },
        'pooled child exited',
      );
    });
    return pc;
  }

  private release(pc: PoolChild): void {
    if (pc.child.hasExited()) return;
    const o = this.opts;
    let why: string | null = pc.unfit;
    if (!why && this.closing) why = 'sandbox closing';
    if (!why && pc.jobsRun >= o.maxJobsPerChild) why = `ran ${pc.jobsRun} jobs`;
    if (!why && pc.lastRssBytes > o.maxRssBytes)
      why = `RSS ${mib(pc.lastRssBytes)} above ${mib(o.maxRssBytes)}`;
    if (why) {
      this.retire(pc, why);
      return;
    }
    pc.state = 'idle';
    this.idle.push(pc);
  }

  /** Ask a child to leave; SIGTERM/SIGKILL if it does not within the grace period. */
  private retire(pc: PoolChild, why: string): void {
    if (pc.state === 'retiring') return;
    pc.state = 'retiring';
    this.idle = this.idle.filter((x) => x !== pc);
    this.log.debug?.({ pid: pc.pid, why }, 'recycling pooled child');
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

  private async runPooled(req: RunRequest, hooks: RunHooks): Promise<RunOutcome> {
    const t0 = performance.now();
    const pc = this.acquire(loaderFor(req.handler));
    const jobLog = new JobLog(req.logFile, req.logTailBytes, (err) =>
      this.log.warn({ jobId: req.jobId, file: req.logFile, err: err.message }, 'cannot write job log file'),
    );
    const markers = pc.beginJob(jobLog);
    // A pooled child is shared, so the job's env and cwd travel with the job.
    const msg: JobMessage = {
      ...jobMessage(req),
      ...(req.env ? { env: req.env } : {}),
      ...(req.cwd ? { cwd: req.cwd } : {}),
    };
    const cpuBase = pc.cpuBaseMs;
    let killed: ExitInfo | undefined;
    const { ex, sampled, taint } = await this.execute(pc.child, req, hooks, () => pc.child.send(msg));

    if (ex.kind === 'done') {
      await untilOrExit(pc.child, markers);
    } else if (ex.kind === 'kill') {
      pc.markUnfit(ex.reason);
      killed = await killChild(pc.child, req.killGraceMs);
    } else if (ex.kind === 'exit') {
      pc.markUnfit('exited during a job');
    }
    if (pc.child.hasExited()) await pc.drained(DRAIN_AFTER_EXIT_MS);
    pc.endJob();
    await jobLog.close();

    if (ex.kind !== 'unsendable') pc.jobsRun++;
    if (ex.kind === 'done') {
      if (ex.done.taint) pc.markUnfit('unhandled rejection', { error: ex.done.taint });
      pc.lastRssBytes = ex.done.usage.rssBytes;
      // 'ready' may not have arrived before the job was sent; it always arrives before 'done'.
      const base = cpuBase ?? pc.cpuBaseMs ?? 0;
      pc.cpuBaseMs = ex.done.usage.cpuMs;
      this.release(pc);
      return this.outcome(ex, undefined, t0, sampled, taint, base, ex.done.usage.rssBytes, jobLog.tail());
    }
    this.release(pc);
    return this.outcome(ex, killed, t0, sampled, taint, cpuBase ?? 0, undefined, jobLog.tail());
  }

  // ---- isolated -----------------------------------------------------------------------------

  private async runIsolated(req: RunRequest, hooks: RunHooks): Promise<RunOutcome> {
    const t0 = performance.now();
    ensureDir(req.logFile);
    // The child writes straight into the log file: its output never passes through the daemon.
    const fh = await open(req.logFile, 'a');
    let startSize: number;
    let child: Child;
    try {
      startSize = (await fh.stat()).size;
      child = startChild({
        mode: 'isolated',
        loader: loaderFor(req.handler),
        output: fh.fd,
        env: req.env ? { ...process.env, ...req.env } : process.env,
        ...(req.cwd ? { cwd: req.cwd } : {}),
      });
    } finally {
      await fh.close();
    }
    this.isolated.add(child);
    // An isolated child got the job's env and cwd at spawn.
    const msg = jobMessage(req);
    try {
      const { ex, sampled, taint } = await this.execute(child, req, hooks, () => child.send(msg));
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
        tail = await readFileTail(req.logFile, startSize, req.logTailBytes);
      } catch (err) {
        this.log.warn(
          { jobId: req.jobId, file: req.logFile, err: (err as Error).message },
          'cannot read job log tail',
        );
      }
      const rss = ex.kind === 'done' ? ex.done.usage.maxRssBytes : undefined;
      return this.outcome(ex, ex.kind === 'kill' ? killed : undefined, t0, sampled, taint, 0, rss, tail);
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
    send: () => void,
  ): Promise<{ ex: Execution; sampled: Sampled; taint: SerializedError | null }> {
    const sampled: Sampled = {};
    let taint: SerializedError | null = null;
    const progress = new ProgressCoalescer(req.progressIntervalMs, (percent, message) => {
      try {
        hooks.onProgress(percent, message);
      } catch (err) {
        this.log.warn({ jobId: req.jobId, err: (err as Error).message }, 'onProgress hook threw');
      }
    });

    return new Promise((resolve) => {
      let ended = false;
      const finish = (ex: Execution): void => {
        if (ended) return;
        ended = true;
        clearTimeout(timeout);
        clearInterval(sampler);
        offExit();
        offMessage();
        hooks.signal?.removeEventListener('abort', onAbort);
        this.stoppers.delete(stop);
        progress.close();
        resolve({ ex, sampled, taint });
      };

      const onMessage = (m: ChildMessage): void => {
        if (m.t === 'progress') progress.push(m.percent, m.message);
        else if (m.t === 'taint') taint = m.error;
        else if (m.t === 'done') finish({ kind: 'done', done: m });
      };
      const offMessage = child.onMessage(onMessage);
      const offExit = child.onExit((exit) => finish({ kind: 'exit', exit }));

      // setTimeout fires at once for delays above 2^31-1 ms; a non-finite timeout means none.
      const timeout = Number.isFinite(req.timeoutMs)
        ? setTimeout(
            () =>
              finish({
                kind: 'kill',
                reason: 'timeout',
                error: serializeError(new JobTimeoutError(req.timeoutMs)),
              }),
            Math.min(Math.max(0, req.timeoutMs), MAX_TIMER_MS),
          )
        : undefined;

      const onAbort = (): void =>
        finish({
          kind: 'kill',
          reason: 'aborted',
          error: {
            name: 'JobAbortedError',
            code: 'JOBD_ABORTED',
            message: `job aborted: ${abortMessage(hooks.signal?.reason)}`,
          },
        });
      hooks.signal?.addEventListener('abort', onAbort, { once: true });
      // Aborted while the child was being started: the listener above will never fire.
      if (hooks.signal?.aborted) onAbort();

      const stop = (): void =>
        finish({
          kind: 'kill',
          reason: 'aborted',
          error: {
            name: 'JobAbortedError',
            code: 'JOBD_ABORTED',
            message: 'job aborted: the sandbox is closing',
          },
        });
      this.stoppers.add(stop);

      let sampling = false;
      const sampler = setInterval(
        () => {
          const pid = child.pid;
          if (sampling || pid === undefined || ended) return;
          sampling = true;
          pidusage(pid, { maxage: this.sampleMaxAge })
            .then((s) => {
              sampled.peakRssBytes = Math.max(sampled.peakRssBytes ?? 0, s.memory);
              sampled.lastCpuMs = s.ctime;
              const limit = req.memoryLimitBytes;
              if (limit !== undefined && s.memory > limit) {
                finish({
                  kind: 'kill',
                  reason: 'memory',
                  error: {
                    name: 'MemoryLimitError',
                    code: 'JOBD_MEMORY_LIMIT',
                    message: `job exceeded its memory limit of ${mib(limit)} (${limit} bytes): child RSS was ${mib(s.memory)} (${s.memory} bytes)`,
                  },
                });
              }
            })
            .catch(() => {
              // the child exited between samples; its exit is handled elsewhere
            })
            .finally(() => (sampling = false));
        },
        Math.max(10, this.opts.sampleIntervalMs),
      );

      if (ended) return;
      try {
        send();
      } catch (err) {
        const e = serializeError(err);
        finish({
          kind: 'unsendable',
          error: {
            name: 'UnserializableParamsError',
            code: 'JOBD_UNSERIALIZABLE_PARAMS',
            message: `job params cannot be sent to the child (${e.message})`,
          },
        });
      }
    });
  }

  private outcome(
    ex: Execution,
    killed: ExitInfo | undefined,
    t0: number,
    sampled: Sampled,
    taint: SerializedError | null,
    cpuBaseMs: number,
    reportedRss: number | undefined,
    logTail: string,
  ): RunOutcome {
    const resources: JobResources = { wallMs: Math.round(performance.now() - t0) };
    const peak = Math.max(sampled.peakRssBytes ?? 0, reportedRss ?? 0);
    if (peak > 0) resources.peakRssBytes = peak;
    const cpuTotal = ex.kind === 'done' ? ex.done.usage.cpuMs : sampled.lastCpuMs;
    if (cpuTotal !== undefined)
      resources.cpuMs = Math.max(0, Math.round((cpuTotal - cpuBaseMs) * 1000) / 1000);

    if (ex.kind === 'done') {
      if (ex.done.ok) return { status: 'completed', output: ex.done.output, resources, logTail };
      return {
        status: 'failed',
        reason: 'error',
        error: ex.done.error ?? { name: 'Error', message: 'handler failed without an error' },
        resources,
        logTail,
      };
    }
    if (ex.kind === 'exit') {
      return {
        status: 'failed',
        reason: 'crash',
        error: crashError(ex.exit, taint, true),
        exitCode: ex.exit.code,
        signal: ex.exit.signal,
        resources,
        logTail,
      };
    }
    const reason: FailureReason = ex.kind === 'kill' ? ex.reason : 'error';
    return {
      status: 'failed',
      reason,
      error: ex.error,
      ...(killed ? { exitCode: killed.code, signal: killed.signal } : {}),
      resources,
      logTail,
    };
  }
}

export function createSandbox(options: SandboxOptions): Sandbox {
  return new SandboxImpl(options);
}
