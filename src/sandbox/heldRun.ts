/**
 * One job held by a pooled child, from its hand-over to the first thing that ends it: its result, the
 * timeout (counted from when the child starts it), an abort, the memory limit, or the child's exit.
 *
 * A job the child has not started is never the reason to kill it: an abort takes it out of the child's
 * queue ('drop'), and when the child dies for another job's sake it is released (given back to run
 * again, its attempt not spent). So is a job the child finished but whose result it could not send
 * before it died: its handler ran, and runs again.
 */
import { UnserializableParamsError, serializeError } from '../errors.js';
import type { SerializedError } from '../types.js';
import type { JobLog } from './jobLog.js';
import { sampleChild } from './memorySampler.js';
import { plain, type Execution, type Sampled } from './outcome.js';
import type { Held, PoolChild } from './poolChild.js';
import { hookedProgress, type ProgressCoalescer } from './progress.js';
import type { JobMessage } from './protocol.js';
import type { RunHooks, RunRequest, SandboxLogger } from './types.js';

const MAX_TIMER_MS = 2 ** 31 - 1;

export interface HeldDeps {
  log: SandboxLogger;
  sampleIntervalMs: number;
  sampleMaxAge: number;
  /** Stop functions of everything running (sandbox close). */
  stoppers: Set<() => void>;
  timeoutError(req: RunRequest): SerializedError;
  abortEx(reason: unknown): Extract<Execution, { kind: 'kill' }>;
  hookBlocked(budgetMs: number): SerializedError;
}

export interface HeldResult {
  ex: Execution;
  held: Held;
  sampled: Sampled;
  taint: SerializedError | null;
  /** The child's cumulative CPU when the job started (from the result before it). */
  cpuBaseMs: number | undefined;
}

export function runHeld(
  pc: PoolChild,
  msg: JobMessage,
  jobLog: JobLog,
  req: RunRequest,
  hooks: RunHooks,
  deps: HeldDeps,
): Promise<HeldResult> {
  const sampled: Sampled = {};
  let progress: ProgressCoalescer | undefined;
  let cpuBaseMs: number | undefined;
  const newProgress = (): ProgressCoalescer =>
    hookedProgress(
      req.progressIntervalMs,
      (p, m) => hooks.onProgress(p, m),
      (w) => deps.log.warn({ jobId: req.jobId, ...w }, 'onProgress hook threw'),
    );

  return new Promise((resolve) => {
    let ended = false;
    let timeout: NodeJS.Timeout | undefined;
    let sampler: NodeJS.Timeout | undefined;
    // onAbort is defined below; an abort can only come later, from outside.
    const offAbort = hooks.abort?.onAbort(() => onAbort());
    /** An abort waits for the child's answer to 'drop'. */
    let dropping: Extract<Execution, { kind: 'kill' }> | null = null;
    const running = (): boolean => held.startedAt !== undefined && !held.ended;

    const finish = (ex: Execution): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timeout);
      clearInterval(sampler);
      offExit();
      offAbort?.();
      deps.stoppers.delete(stop);
      progress?.close();
      resolve({ ex, held, sampled, taint: null, cpuBaseMs });
    };

    const armTimeout = (ms: number, ex: () => Execution): void => {
      clearTimeout(timeout);
      timeout = setTimeout(() => finish(ex()), Math.min(ms, MAX_TIMER_MS));
    };

    const startSampling = (): void => {
      sampler = sampleChild({
        pid: () => pc.child.pid,
        live: () => !ended && running(),
        intervalMs: deps.sampleIntervalMs,
        maxAgeMs: deps.sampleMaxAge,
        limitBytes: req.memoryLimitBytes,
        sampled,
        over: (err) => finish({ kind: 'kill', reason: 'memory', error: plain(err) }),
      });
    };

    const onAbort = (): void => abort(deps.abortEx(hooks.abort?.reason));
    const stop = (): void => abort(deps.abortEx('the sandbox is closing'));
    const abort = (ex: Extract<Execution, { kind: 'kill' }>): void => {
      if (ended || dropping) return;
      if (held.ended) return; // finished: its result is on its way
      if (running()) return finish(ex);
      dropping = ex;
      pc.drop(held);
    };

    // (`started` may be called before assign returns: it does not touch `held`.)
    const held: Held = pc.assign(msg, jobLog, {
      started: () => {
        if (ended) return;
        // A non-finite timeout means none; it counts from here, not from the hand-over.
        if (Number.isFinite(req.timeoutMs)) {
          armTimeout(Math.max(0, req.timeoutMs), () => ({
            kind: 'kill',
            reason: 'timeout',
            error: deps.timeoutError(req),
          }));
        }
        startSampling();
      },
      done: (d, base) => {
        cpuBaseMs = base;
        if (ended) return;
        clearTimeout(timeout);
        finish({ kind: 'done', done: d });
      },
      progress: (m) => {
        if (!ended) (progress ??= newProgress()).push(m.percent, m.message);
      },
      hooks: (m) => {
        // The handler settled: the job's timeout gives way to the hook's bound (the child enforces
        // it; this catches a hook that blocks the child's event loop).
        if (ended) return;
        armTimeout(m.budgetMs + Math.max(1_000, req.killGraceMs), () => ({
          kind: 'kill',
          reason: 'timeout',
          error: deps.hookBlocked(m.budgetMs),
        }));
      },
      dropped: (m) => {
        if (ended || !dropping) return;
        const ex = dropping;
        dropping = null;
        if (m.ok) {
          finish({ kind: 'dropped', error: ex.error });
        } else if (running()) {
          finish(ex); // it started meanwhile: stopped the usual way
        }
        // else it ended meanwhile: its result is on its way
      },
      unsendable: (err) =>
        finish({
          kind: 'unsendable',
          error: plain(new UnserializableParamsError(serializeError(err).message)),
        }),
    });

    const offExit = pc.child.onExit((exit) => {
      if (dropping) return finish({ kind: 'dropped', error: dropping.error });
      if (running()) return finish({ kind: 'exit', exit });
      finish({ kind: 'released', exit });
    });
    deps.stoppers.add(stop);
    if (hooks.abort?.aborted) onAbort();
  });
}
