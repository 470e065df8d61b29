/**
 * Runs a job of a type in mode "inline": its handler is called in the daemon's own process, as the
 * in-process peers do (pg-boss, BullMQ in-process), with no child to start or message to send.
 *
 * The handler gets the same ctx as in a sandbox child (progress, logger to the job's log file, signal,
 * allocation, dependencies, children, spawn, waitForChildren), its lifecycle hooks run beside it, and
 * its outcome is the sandbox's: the output travels as structured clone (plain data only, bounded), a
 * thrown error is serialised the same way, progress is coalesced the same way.
 *
 * What a process boundary gave and this cannot:
 * - A timeout or an abort (cancel, lost lease, shutdown) aborts ctx.signal. The attempt is settled
 *   once the handler settles or, at the latest, after worker.killGraceMs: a handler that ignores the
 *   signal is abandoned (its promise keeps running in the daemon, its result is dropped, its logger
 *   and progress are cut off). Nothing can be killed.
 * - A handler that blocks the event loop stalls the whole daemon (claims, heartbeats, other jobs).
 * - No memory limit, no per-job environment: jobs share the daemon's heap and environment (the
 *   settings refuse memoryLimitMb, GPU needs and the source readers in this mode). What console.log
 *   writes goes to the daemon's own output; ctx.logger writes to the job's log file.
 * - An unhandled rejection or uncaught exception stops the daemon (jobd treats it as fatal); its jobs
 *   are rescued by their expired leases, as after any daemon crash.
 * - resources carry wallMs only: CPU and memory are the daemon's, not the job's.
 */
import { deserialize } from 'node:v8';
import {
  HandlerLoadError,
  JobAbortedError,
  JobTimeoutError,
  OutputTooLargeError,
  UnserializableOutputError,
  serializeError,
} from '../errors.js';
import { loadHandlerModule } from '../jobs/catalog.js';
import { hookRunner, pickHooks, type HookRunner, type Hooks } from '../sandbox/childHooks.cjs';
import { JobLog } from '../sandbox/jobLog.js';
import { encodeOutput } from '../sandbox/outputEncoding.cjs';
import { hookedProgress, type ProgressCoalescer } from '../sandbox/progress.js';
import type { SpawnedChild } from '../sandbox/protocol.js';
import { familyContext, waitPolicy } from '../sandbox/spawnChildren.cjs';
import type { RunHooks, RunOutcome, RunRequest } from '../sandbox/types.js';
import type { ChildFailurePolicy, JobContext, SerializedError } from '../types.js';
import { LazyAbort } from '../sandbox/lazyAbort.cjs';

type HandlerFn = (params: unknown, ctx: JobContext) => unknown;

/** The sandbox's default bound on an encoded output: any result MongoDB can store fits. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** As a sandbox child bounds an error's text before sending it. */
const MAX_ERROR_TEXT = 64 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Loaded {
  fn: HandlerFn;
  hooks: Hooks;
  /** Whether the module exports any hook: most export none, and then no hook runner is made per job. */
  anyHook: boolean;
}

/** How the handler's own run ended (it may end after the attempt was settled without it). */
type Ran =
  | { ok: true; output: unknown; spawned?: SpawnedChild[]; wait?: ChildFailurePolicy }
  | { ok: false; error: SerializedError };

/**
 * What the daemon hands an inline run besides the sandbox's hooks. `controller`: the execution's own
 * abort; the run aborts it on timeout and gives its signal to the handler as ctx.signal, instead of a
 * second controller that follows the first. The signal is made only if the handler reads ctx.signal
 * (an AbortSignal costs microseconds to make, per job; see LazyAbort).
 * `onOutput`: called once, before the attempt first writes to its log file (most jobs never do).
 */
export interface InlineHooks extends RunHooks {
  controller?: LazyAbort;
  onOutput?(): void;
}

export interface InlineLogger {
  warn(obj: Record<string, unknown>, msg?: string): void;
}

function bounded(text: string): string {
  if (text.length <= MAX_ERROR_TEXT) return text;
  return `${text.slice(0, MAX_ERROR_TEXT)}... (${text.length - MAX_ERROR_TEXT} more characters cut)`;
}

function serialize(err: unknown): SerializedError {
  const e = serializeError(err);
  e.message = bounded(e.message);
  if (e.stack) e.stack = bounded(e.stack);
  return e;
}

/** A daemon-side error as recorded: its stack would show only jobd's own frames. */
function plain(err: Error): SerializedError {
  const e = serializeError(err);
  delete e.stack;
  return e;
}

function abortMessage(reason: unknown): string {
  if (reason instanceof Error) return reason.message;
  if (typeof reason === 'string') return reason;
  return 'aborted by jobd';
}

/** A value its structured clone equals exactly (and that needs no size check). */
function isCloneIdentical(v: unknown): v is null | boolean | number {
  return v === null || typeof v === 'boolean' || typeof v === 'number';
}

/** Where an inline ctx keeps its execution's abort, for SIGNAL's getter. */
const CONTROLLER = Symbol('jobd.inline.controller');

/**
 * ctx.signal of every inline ctx: one getter, shared, that makes the signal on first read from the
 * ctx's own CONTROLLER. A getter made per ctx would put each ctx (and each copy a typed job type makes
 * of it) in V8's slow dictionary mode, several hundred bytes per job more. CONTROLLER is enumerable,
 * so a copy of ctx that copies its fields, symbols included (a spread, defineJobType's copyContext),
 * carries it along with the getter.
 */
const SIGNAL: PropertyDescriptor = {
  get(this: { [CONTROLLER]: LazyAbort }): AbortSignal {
    return this[CONTROLLER].signal;
  },
  enumerable: true,
  configurable: true,
};

function logLine(level: string, msg: string, extra?: Record<string, unknown>): string {
  let rest = '';
  if (extra) {
    try {
      rest = ' ' + JSON.stringify(extra);
    } catch {
      rest = ' [unserialisable extra]';
    }
  }
  return `${new Date().toISOString()} ${level} ${msg}${rest}\n`;
}

export class InlineRunner {
  private readonly loaded = new Map<string, Promise<Loaded>>();
  /** The job environment last put into process.env (the same frozen object for every job of a config). */
  private appliedEnv: Readonly<Record<string, string>> | undefined;

  constructor(private readonly log: InlineLogger) {}

  /** Same contract as Sandbox.run: never rejects for job-level problems. */
  run(req: RunRequest, hooks: InlineHooks): Promise<RunOutcome> {
    const t0 = performance.now();
    const wall = (): { wallMs: number } => ({ wallMs: Math.round(performance.now() - t0) });
    // With the execution's abort, the aborts that reach the run come on that same one.
    const controller = hooks.controller ?? new LazyAbort();
    const outer = hooks.controller ?? hooks.signal;
    if (outer?.aborted) {
      const error = plain(
        new JobAbortedError(`job aborted before it started: ${abortMessage(outer.reason)}`),
      );
      return Promise.resolve({ status: 'failed', reason: 'aborted', error, resources: wall(), logTail: '' });
    }
    let active = true;
    // The log file is opened on the first line, as a pooled child's is on its first byte of output.
    let jobLog: JobLog | undefined;
    const write = (text: string): void => {
      if (!active) return;
      if (!jobLog) {
        hooks.onOutput?.();
        jobLog = new JobLog(req.logFile, req.logTailBytes, (err) =>
          this.log.warn(
            { jobId: req.jobId, file: req.logFile, err: err.message },
            'cannot write job log file',
          ),
        );
      }
      jobLog.write(Buffer.from(text), () => {});
    };
    // Made on the first report: most jobs report no progress.
    let progress: ProgressCoalescer | undefined;
    const spawned: SpawnedChild[] = [];
    const family = req.family;
    const ctx = {
      jobId: req.jobId,
      type: req.type,
      attempt: req.attempt,
      progress: (percent: number, message?: string) => {
        if (!active || typeof percent !== 'number' || !Number.isFinite(percent)) return;
        progress ??= hookedProgress(
          req.progressIntervalMs,
          (p, m) => hooks.onProgress(p, m),
          (w) => this.log.warn({ jobId: req.jobId, ...w }, 'onProgress hook threw'),
        );
        progress.push(
          Math.min(100, Math.max(0, percent)),
          message !== undefined ? String(message) : undefined,
        );
      },
    } as unknown as JobContext & { [CONTROLLER]: LazyAbort };
    // The signal is made when the handler (or a hook) first reads it (see SIGNAL).
    Object.defineProperty(ctx, 'signal', SIGNAL);
    ctx.logger = {
      info: (msg, extra) => write(logLine('INFO', msg, extra)),
      warn: (msg, extra) => write(logLine('WARN', msg, extra)),
      error: (msg, extra) => write(logLine('ERROR', msg, extra)),
    };
    ctx.paths = { log: req.logFile };
    const fam = familyContext(req.jobId, family, req.allocation, spawned);
    for (const k in fam) (ctx as unknown as Record<string, unknown>)[k] = fam[k as keyof typeof fam];
    ctx[CONTROLLER] = controller;

    return new Promise<RunOutcome>((resolve) => {
      let ended = false;
      let timer: NodeJS.Timeout | undefined;
      let graceTimer: NodeJS.Timeout | undefined;
      let runner: HookRunner | undefined;
      const finish = (o: RunOutcome): void => {
        if (ended) return;
        ended = true;
        active = false;
        clearTimeout(timer);
        clearTimeout(graceTimer);
        offAbort?.();
        progress?.close();
        const hookErrors = runner?.failures.length ? { hookErrors: [...runner.failures] } : {};
        if (!jobLog) {
          // Nothing was written (most jobs): no file to close first.
          resolve(runner?.failures.length ? { ...o, ...hookErrors } : o);
          return;
        }
        const tail = jobLog.tail();
        void jobLog.close().then(() => resolve({ ...o, logTail: tail, ...hookErrors }));
      };
      /** The attempt ends by jobd's decision: abort the handler, and settle when it stops or the grace ends. */
      let stopping = false;
      const stop = (reason: 'timeout' | 'aborted', error: SerializedError, abortWith: Error): void => {
        if (ended || stopping) return;
        stopping = true;
        clearTimeout(timer);
        const failed: RunOutcome = { status: 'failed', reason, error, resources: {}, logTail: '' };
        const settle = (): void => finish({ ...failed, resources: wall() });
        graceTimer = setTimeout(settle, Math.min(Math.max(0, req.killGraceMs), MAX_TIMER_MS));
        stopped = settle;
        // A shared abort may have happened already: that abort is what brought the run here (and
        // then this changes nothing).
        controller.abort(abortWith);
      };
      let stopped: (() => void) | undefined;
      const onAbort = (): void => {
        const reason = outer?.reason;
        stop(
          'aborted',
          plain(new JobAbortedError(`job aborted: ${abortMessage(reason)}`)),
          new Error(abortMessage(reason)),
        );
      };
      let offAbort: (() => void) | undefined;
      if (outer instanceof LazyAbort) offAbort = outer.onAbort(onAbort);
      else if (outer) {
        outer.addEventListener('abort', onAbort, { once: true });
        offAbort = () => outer.removeEventListener('abort', onAbort);
      }
      if (Number.isFinite(req.timeoutMs)) {
        timer = setTimeout(
          () => {
            const e = new JobTimeoutError(req.timeoutMs);
            stop('timeout', plain(e), e);
          },
          Math.min(Math.max(0, req.timeoutMs), MAX_TIMER_MS),
        );
      }

      void this.attempt(
        req,
        ctx,
        spawned,
        () => ended || stopping,
        (r) => (runner = r),
        () => {
          // The handler settled and a hook follows: the job's timeout gives way to the hook's own bound.
          clearTimeout(timer);
        },
      ).then((ran) => {
        // Stopped by jobd: the handler settled within the grace, and the attempt is what jobd decided.
        if (stopped) return stopped();
        if (ran.ok) {
          const { output, spawned: sp, wait } = ran;
          return finish({
            status: 'completed',
            output,
            resources: wall(),
            logTail: '',
            ...(sp?.length ? { spawned: sp } : {}),
            ...(wait ? { wait } : {}),
          });
        }
        return finish({
          status: 'failed',
          reason: 'error',
          error: ran.error,
          resources: wall(),
          logTail: '',
        });
      });
    });
  }

  /**
   * Load, run onStart, the handler and the hook that follows, as a sandbox child does. `stopped` tells
   * whether jobd has ended the attempt (then no hook follows here: the daemon decides about it).
   */
  private async attempt(
    req: RunRequest,
    ctx: JobContext,
    spawned: SpawnedChild[],
    stopped: () => boolean,
    onRunner: (r: HookRunner) => void,
    onAfter: () => void,
  ): Promise<Ran> {
    let runner: HookRunner | undefined;
    try {
      const { fn, hooks, anyHook } = await this.load(req.handler);
      if (stopped()) throw ctx.signal.reason;
      this.applyEnv(req.env);
      const hooksReq = req.hooks;
      if (hooksReq && anyHook) {
        runner = hookRunner(hooks, hooksReq, ctx, (err) => Promise.resolve(serialize(err)), onAfter);
        onRunner(runner);
      }
      let value: unknown = null;
      if (hooksReq?.only) {
        const o = hooksReq.only;
        if (runner)
          await runner.run(o.hook, o.hook === 'onRetry' ? [o.error, req.attempt, o.delayMs ?? 0] : [o.error]);
      } else {
        // Without hooks (most modules) no await of nothing: each costs the job a promise and a tick.
        if (runner) await runner.run('onStart', []);
        value = await fn(req.params, ctx);
      }
      // A parent that waits for its children returns a sentinel, not its output.
      const wait = waitPolicy(value);
      // null, a boolean or a number arrives from a structured clone as it left (-0 and NaN included):
      // most trivial handlers return one, and the round trip below was a good part of their cost.
      if (!wait && isCloneIdentical(value)) {
        if (runner && !hooksReq?.only && !stopped()) await runner.after({ ok: true, output: value });
        return { ok: true, output: value, ...(spawned.length > 0 ? { spawned: [...spawned] } : {}) };
      }
      const encoded = encodeOutput(wait ? null : value, MAX_OUTPUT_BYTES);
      if (!encoded.ok) {
        throw encoded.tooLarge
          ? new OutputTooLargeError(encoded.reason)
          : new UnserializableOutputError(encoded.reason);
      }
      // A parent that waits has not finished: onSuccess runs when it returns for good.
      if (runner && !hooksReq?.only && !wait && !stopped()) await runner.after({ ok: true, output: value });
      // The value as a child's would arrive: a structured-clone copy, nothing shared with the handler.
      return {
        ok: true,
        output: deserialize(encoded.bytes!),
        ...(spawned.length > 0 ? { spawned: [...spawned] } : {}),
        ...(wait ? { wait } : {}),
      };
    } catch (err) {
      const error = serialize(err);
      if (runner && !req.hooks?.only && !stopped()) await runner.after({ ok: false, error });
      return { ok: false, error };
    }
  }

  private load(spec: string): Promise<Loaded> {
    let p = this.loaded.get(spec);
    if (!p) {
      p = loadHandlerModule(spec).then(
        (loaded: unknown) => {
          // module.exports = fn (CommonJS) counts as a default export, as in a child.
          const mod = (typeof loaded === 'function' ? { default: loaded } : (loaded ?? {})) as Record<
            string,
            unknown
          >;
          const dflt = mod.default as Record<string, unknown> | HandlerFn | undefined;
          const candidates = [
            dflt,
            mod.handler,
            dflt && typeof dflt === 'object' ? dflt.default : undefined,
            dflt && typeof dflt === 'object' ? dflt.handler : undefined,
          ];
          const fn = candidates.find((c) => typeof c === 'function') as HandlerFn | undefined;
          if (!fn) {
            throw new HandlerLoadError(
              `handler module ${spec} has no default export function and no "handler" export function`,
            );
          }
          const hooks = pickHooks(mod);
          return { fn, hooks, anyHook: Object.keys(hooks).length > 0 };
        },
        (err: unknown) => {
          const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
          throw new HandlerLoadError(`handler module ${spec} cannot be loaded: ${what}`, { cause: err });
        },
      );
      // A module that failed to load is tried again by the next job rather than cached as broken.
      p.catch(() => this.loaded.delete(spec));
      this.loaded.set(spec, p);
    }
    return p;
  }

  /**
   * The job's environment (data dirs, data settings, programs: the same for every inline job of the
   * daemon, see whyNotInline) is put into the daemon's process.env, where typed job types read it.
   */
  private applyEnv(env: Readonly<Record<string, string>> | undefined): void {
    if (!env || env === this.appliedEnv) return;
    for (const [k, v] of Object.entries(env)) process.env[k] = v;
    this.appliedEnv = env;
  }
}
