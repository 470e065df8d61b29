/**
 * Entry of a sandbox child process: `node childEntry.cjs pooled|isolated require|import [jobd-hook]`.
 * pooled: Node IPC channel. isolated: fd 3, a socket: the job comes in, messages go out (see processes.ts).
 * jobd-hook: register the resolve hook for `import 'jobd'` (see jobdResolve.cts).
 *
 * Kept deliberately small: isolated children start once per job, so this file imports only
 * node builtins at startup; jobd's error classes and the handler module are loaded with the first job.
 * It is CommonJS on purpose: with `require` (compiled builds, JavaScript handlers at absolute
 * paths) an ES handler module is loaded through require(esm) without starting the asynchronous
 * ESM loader, which is a large share of a short-lived child's start-up CPU. Handlers with
 * top-level await, package specifiers and TypeScript handlers (tsx) go through import().
 *
 * pooled:   holds a queue of jobs and runs them one at a time, in the order they came, for as long
 *           as the parent keeps it; handler modules are cached. After each job it writes an end-of-job
 *           marker to stdout and stderr (see protocol.ts); results go back in batches ('results').
 * isolated: runs exactly one job, sends 'done', exits.
 *
 * On SIGTERM the current job's ctx.signal is aborted; the process exits once the handler settles
 * (the parent sends SIGKILL if that takes longer than the grace period). Jobs still queued do not
 * run: the parent gives them back.
 *
 * A handler whose promise never settles while nothing is left to run would let the process end
 * (isolated) or sit until the timeout (pooled). 'beforeExit' during a job is that moment: the job
 * fails with HandlerNeverSettledError. A pooled child unrefs its IPC channel during each job so its
 * event loop can empty like an isolated child's.
 */
import { readFileSync, writeSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { JobContext, SerializedError } from '../types.js';
import type {
  ChildMessage,
  DoneMessage,
  JobMessage,
  ParentMessage,
  SelfUsage,
  SpawnedChild,
} from './protocol.js';
import { installRequireFallback, isJobdImportFailure, registerImportHook } from './jobdResolve.cjs';
import { encodeOutput } from './outputEncoding.cjs';
import { decodeBody, encodeFrame } from './frames.cjs';
import { LazyAbort } from './lazyAbort.cjs';
import { hookRunner, pickHooks, type Hooks } from './childHooks.cjs';
import { familyContext, namedError, waitPolicy } from './spawnChildren.cjs';

type HandlerFn = (params: unknown, ctx: JobContext) => unknown;

const mode = process.argv[2] === 'isolated' ? 'isolated' : 'pooled';
const preferRequire = process.argv[3] === 'require';
const jobdHook = process.argv[4] === 'jobd-hook';
installRequireFallback();
if (jobdHook) registerImportHook();
// Only pooled children mark the end of each job's output (protocol.ts); isolated ones skip the import.
const nonce = process.env.JOBD_SANDBOX_NONCE;
delete process.env.JOBD_SANDBOX_NONCE;
let marker: string | undefined;
const markerReady: Promise<string | undefined> = nonce
  ? import('./protocol.js').then((p) => (marker = p.endOfJobMarker(nonce)))
  : Promise.resolve(undefined);

/** Pooled: end the current job's output on both streams (synchronous pipe writes). */
function writeMarkers(): void {
  if (!marker) return;
  process.stdout.write(marker);
  process.stderr.write(marker);
}

const handlers = new Map<string, Promise<HandlerFn>>();
/** Lifecycle hooks of each loaded module (childHooks.cts), found when its handler is. */
const hooksOf = new Map<string, Hooks>();
let current: {
  abort: LazyAbort;
  settled: Promise<void>;
  /** Fail the job: its handler can no longer settle (the event loop emptied). */
  stall(err: Error): void;
  stalled: boolean;
} | null = null;
let stopping = false;
/** Pooled: jobs handed over and not started, in order. */
const queue: JobMessage[] = [];
/** Pooled: results not yet reported. */
let unreported: DoneMessage[] = [];
let reportScheduled = false;
/** Pooled: queued jobs the parent took back; skipped when their turn comes. */
const skipped = new Set<string>();
/** Results held back at most this many at a time (and never past the next turn of the event loop). */
const RESULTS_BATCH = 16;
/** First unhandled rejection since the current job started; reported with the job's 'done'. */
let taintDuringJob: { reason: unknown } | null = null;

/**
 * `node:v8`, loaded only when a message needs it: isolated children frame plain messages as JSON
 * (frames.cts), and loading it costs ~3.5 CPU-ms of a ~100 CPU-ms start.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- loaded on first use
const v8 = (): typeof import('node:v8') => require('node:v8') as typeof import('node:v8');

/** Throws (synchronously) when the message cannot be serialised. */
function send(msg: ChildMessage, cb?: (err: Error | null) => void): void {
  if (mode === 'isolated') {
    // fd 3 is a blocking socket to the parent: one synchronous frame per message (frames.cts).
    const frame = encodeFrame(msg, v8);
    try {
      writeSync(3, frame);
    } catch (err) {
      cb?.(err as Error); // EPIPE: the parent is gone
      return;
    }
    cb?.(null);
    return;
  }
  if (!process.connected || !process.send) {
    cb?.(new Error('IPC channel closed'));
    return;
  }
  process.send(msg, undefined, undefined, cb ?? (() => {}));
}

function usage(): SelfUsage {
  const ru = process.resourceUsage();
  return {
    cpuMs: (ru.userCPUTime + ru.systemCPUTime) / 1000,
    rssBytes: process.memoryUsage.rss(),
    maxRssBytes: ru.maxRSS * 1024,
  };
}

type Errors = typeof import('../errors.js');
let errorsLoaded: Promise<Errors> | undefined;
/**
 * jobd's error classes, loaded the way handlers are: require(esm) where they are required (no
 * asynchronous loader to start), import() otherwise (tsx's require() cannot load an ES module).
 *
 * A handler's module graph may contain jobd's own files (its node_modules/jobd a link to this
 * package). When such a graph fails to link under require(), Node leaves the files it had linked in
 * a state no later require() or import() of them can use (ERR_INTERNAL_ASSERTION), and the error
 * classes are needed just then. Children that load errors.js first (see errorsFirst) never meet that;
 * the others then load a second, separate instance of the module (another URL: `?again`) through
 * import(). Errors leave the child as plain objects, so which instance made them does not matter.
 */
function errors(): Promise<Errors> {
  errorsLoaded ??= preferRequire
    ? new Promise<Errors>((resolve) =>
        // eslint-disable-next-line @typescript-eslint/no-require-imports -- synchronous loading is the point
        resolve(require('../errors.js') as Errors),
      ).catch(() => import(`${pathToFileURL(require.resolve('../errors.js')).href}?again`) as Promise<Errors>)
    : import('../errors.js');
  return errorsLoaded;
}
/**
 * Load errors.js before the handler module. An isolated child that requires its handler skips it:
 * the module costs ~1 CPU-ms at every start and most jobs never need it, and errors() copes with a
 * handler graph that left it unusable. Pooled children load it once for many jobs and keep that
 * order, and so do children that import() handlers (the fallback is known to hold under require()).
 */
const errorsFirst = mode === 'pooled' || !preferRequire;

/** Error text is stored on the job document: keep a runaway message or stack bounded. */
const MAX_ERROR_TEXT = 64 * 1024;
function bounded(text: string): string {
  if (text.length <= MAX_ERROR_TEXT) return text;
  return `${text.slice(0, MAX_ERROR_TEXT)}... (${text.length - MAX_ERROR_TEXT} more characters cut)`;
}

async function serialize(err: unknown): Promise<SerializedError> {
  let e: SerializedError;
  try {
    e = (await errors()).serializeError(err);
  } catch (failed) {
    // jobd's own errors module is unusable: the attempt still reports what went wrong.
    e = fallbackSerialize(err, failed);
  }
  e.message = bounded(e.message);
  if (e.stack) e.stack = bounded(e.stack);
  return e;
}

/** Only builtins: for when errors.js cannot be loaded. */
function fallbackSerialize(err: unknown, why: unknown): SerializedError {
  const o = (err && typeof err === 'object' ? err : {}) as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
    stack?: unknown;
  };
  const message = typeof o.message === 'string' ? o.message : String(err);
  return {
    name: typeof o.name === 'string' ? o.name : 'Error',
    ...(o.code !== undefined ? { code: String(o.code) } : {}),
    message: `${message} (and jobd's error module failed to load: ${why instanceof Error ? why.message : String(why)})`,
    ...(typeof o.stack === 'string' ? { stack: o.stack } : {}),
  };
}

/** Failures of loading itself (resolution, parsing, linking): the same file fails the same way again. */
const LOAD_FAILURE_CODES = new Set([
  'ERR_MODULE_NOT_FOUND',
  'MODULE_NOT_FOUND',
  'ERR_UNSUPPORTED_DIR_IMPORT',
  'ERR_UNKNOWN_FILE_EXTENSION',
  'ERR_PACKAGE_PATH_NOT_EXPORTED',
  'ERR_PACKAGE_IMPORT_NOT_DEFINED',
  'ERR_INVALID_PACKAGE_TARGET',
  'ERR_INVALID_PACKAGE_CONFIG',
  'ERR_INVALID_MODULE_SPECIFIER',
  'ERR_UNSUPPORTED_ESM_URL_SCHEME',
  'ERR_IMPORT_ATTRIBUTE_MISSING',
  'ERR_IMPORT_ASSERTION_TYPE_MISSING',
  'ERR_REQUIRE_ESM',
]);

/**
 * A module that cannot be loaded becomes HandlerLoadError (not retried), naming the module. An
 * exception its top-level code threw while running stays what it is: that code ran, and like an
 * error thrown by the handler it may be transient.
 */
async function loadFailure(spec: string, err: unknown): Promise<unknown> {
  const code = (err as { code?: unknown } | null)?.code;
  const isLoad =
    err instanceof SyntaxError ||
    (err as { name?: unknown } | null)?.name === 'TransformError' ||
    (typeof code === 'string' && LOAD_FAILURE_CODES.has(code));
  if (!isLoad) return err;
  const { HandlerLoadError } = await errors();
  // CommonJS appends a "Require stack" that names only this file.
  const message = err instanceof Error ? err.message.replace(/\nRequire stack:[\s\S]*$/, '') : String(err);
  const what = err instanceof Error ? `${err.name}${code ? ` [${String(code)}]` : ''}: ${message}` : message;
  const e = new HandlerLoadError(`handler module ${spec} cannot be loaded: ${what}`, { cause: err });
  if (err instanceof Error && err.stack) e.stack = err.stack;
  return e;
}

function loadModule(spec: string): Promise<unknown> {
  if (preferRequire && isAbsolute(spec) && /\.[cm]?js$/.test(spec)) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- synchronous loading is the point
      return Promise.resolve(require(spec));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // top-level await, or a runtime without require(esm): the asynchronous loader can do it
      if (code !== 'ERR_REQUIRE_ASYNC_MODULE' && code !== 'ERR_REQUIRE_ESM') return Promise.reject(err);
    }
  }
  return import(isAbsolute(spec) ? pathToFileURL(spec).href : spec);
}

function loadHandler(spec: string): Promise<HandlerFn> {
  let p = handlers.get(spec);
  if (!p) {
    p = loadModule(spec).then((loaded: unknown) => {
      // module.exports = fn (CommonJS through require) counts as a default export
      const mod = (typeof loaded === 'function' ? { default: loaded } : (loaded ?? {})) as Record<
        string,
        unknown
      >;
      const dflt = mod.default as Record<string, unknown> | ((...a: unknown[]) => unknown) | undefined;
      const candidates = [
        dflt,
        mod.handler,
        dflt && typeof dflt === 'object' ? dflt.default : undefined,
        dflt && typeof dflt === 'object' ? dflt.handler : undefined,
      ];
      const fn = candidates.find((c) => typeof c === 'function');
      hooksOf.set(spec, pickHooks(mod));
      if (!fn) {
        return errors().then(({ HandlerLoadError }) => {
          throw new HandlerLoadError(
            `handler module ${spec} has no default export function and no "handler" export function`,
          );
        });
      }
      return fn as HandlerFn;
    });
    // A module that failed to load is retried on the next job rather than cached as broken.
    p.catch(() => handlers.delete(spec));
    handlers.set(spec, p);
  }
  return p;
}

function makeLogger(): JobContext['logger'] {
  const line = (level: string, msg: string, extra?: Record<string, unknown>): string => {
    let rest = '';
    if (extra) {
      try {
        rest = ' ' + JSON.stringify(extra);
      } catch {
        rest = ' [unserialisable extra]';
      }
    }
    return `${new Date().toISOString()} ${level} ${msg}${rest}\n`;
  };
  return {
    info: (msg, extra) => void process.stdout.write(line('INFO', msg, extra)),
    warn: (msg, extra) => void process.stderr.write(line('WARN', msg, extra)),
    error: (msg, extra) => void process.stderr.write(line('ERROR', msg, extra)),
  };
}

/**
 * What the variables a job's env set held before jobd first set them in this child. A pooled child
 * runs thousands of jobs with the same env: the variables stay set between jobs, and a job sets only
 * those that differ and puts back those it does not carry (a GPU list, a source reader's sources).
 */
const envBefore = new Map<string, string | undefined>();

function applyEnv(env: Record<string, string> | undefined, cwd: string | undefined): () => void {
  const want = env ?? {};
  for (const [k, was] of envBefore) {
    if (Object.prototype.hasOwnProperty.call(want, k)) continue;
    if (was === undefined) delete process.env[k];
    else process.env[k] = was;
    envBefore.delete(k);
  }
  for (const k of Object.keys(want)) {
    const v = want[k]!;
    const now = process.env[k];
    if (!envBefore.has(k)) envBefore.set(k, now);
    if (now !== v) process.env[k] = v;
  }
  const prevCwd = cwd ? process.cwd() : undefined;
  if (cwd) process.chdir(cwd);
  return () => {
    if (prevCwd) process.chdir(prevCwd);
  };
}

async function runJob(msg: JobMessage): Promise<void> {
  // Only pooled results carry runMs; the first performance.now() loads perf_hooks (~1.6 CPU-ms).
  const t0 = mode === 'pooled' ? performance.now() : 0;
  const abort = new LazyAbort();
  let done!: () => void;
  const settled = new Promise<void>((r) => (done = r));
  let stall!: (err: Error) => void;
  const stalled = new Promise<never>((_, reject) => (stall = reject));
  current = { abort, settled, stall, stalled: false };
  taintDuringJob = null;
  let active = true;
  // The channel must not keep the loop alive during the job (see 'beforeExit' below).
  if (mode === 'pooled') process.channel?.unref();

  // Coalesce bursts of progress calls into one IPC message per event-loop turn; the parent
  // applies the per-interval limit.
  let pending: { percent: number; message?: string } | null = null;
  let scheduled = false;
  const flushProgress = (): void => {
    scheduled = false;
    if (!pending) return;
    const p = pending;
    pending = null;
    send({
      t: 'progress',
      ...(mode === 'pooled' ? { jobId: msg.jobId } : {}),
      percent: p.percent,
      ...(p.message !== undefined ? { message: p.message } : {}),
    });
  };
  const progress = (percent: number, message?: string): void => {
    if (!active || typeof percent !== 'number' || !Number.isFinite(percent)) return;
    pending = {
      percent: Math.min(100, Math.max(0, percent)),
      ...(message !== undefined ? { message: String(message) } : {}),
    };
    if (!scheduled) {
      scheduled = true;
      setImmediate(flushProgress);
    }
  };

  const spawned: SpawnedChild[] = [];
  const family = msg.family;
  const ctx: JobContext = {
    jobId: msg.jobId,
    type: msg.type,
    attempt: msg.attempt,
    progress,
    get signal() {
      return abort.signal;
    },
    logger: makeLogger(),
    paths: { log: msg.logFile },
    ...familyContext(msg.jobId, family, msg.allocation, spawned),
  };
  // The daemon parsed this typed job's input and checks its output: defineJobType's wrapper skips both,
  // so this child never loads zod.
  if (msg.checks) (ctx as unknown as Record<symbol, unknown>)[Symbol.for('jobd.typedChecks')] = msg.checks;

  let result: DoneMessage;
  let restore: (() => void) | undefined;
  let jobdUnresolved: DoneMessage['jobdUnresolved'];
  const hooks = msg.hooks;
  let runner: ReturnType<typeof hookRunner> | undefined;
  try {
    restore = applyEnv(msg.env, msg.cwd);
    let fn: HandlerFn;
    try {
      // (errorsFirst: see errors())
      const loading = errorsFirst ? errors().then(() => loadHandler(msg.handler)) : loadHandler(msg.handler);
      fn = await Promise.race([loading, stalled]);
    } catch (err) {
      if (!jobdHook && isJobdImportFailure(err)) jobdUnresolved = 'load';
      throw await loadFailure(msg.handler, err);
    }
    // Stopped (SIGTERM) while the module loaded: the handler is not started at all.
    if (abort.aborted) throw abort.reason;
    runner =
      hooks &&
      hookRunner(hooksOf.get(msg.handler) ?? {}, hooks, ctx, serialize, () =>
        send({ t: 'hooks', ...(mode === 'pooled' ? { jobId: msg.jobId } : {}), budgetMs: hooks.timeoutMs }),
      );
    let value: unknown = null;
    if (hooks?.only) {
      // The attempt's own child was killed: only the hook that follows it runs here.
      const o = hooks.only;
      await runner?.run(o.hook, o.hook === 'onRetry' ? [o.error, msg.attempt, o.delayMs ?? 0] : [o.error]);
    } else {
      await runner?.run('onStart', []);
      value = await Promise.race([fn(msg.params, ctx), stalled]);
    }
    // A parent that waits for its children returns a sentinel, not its output.
    const wait = waitPolicy(value);
    // Isolated: plain data goes as JSON text, so neither it nor the 'done' frame needs node:v8.
    const encoded = encodeOutput(wait ? null : value, msg.maxOutputBytes, mode === 'isolated');
    if (!encoded.ok) {
      const e = await errors();
      throw encoded.tooLarge
        ? new e.OutputTooLargeError(encoded.reason)
        : new e.UnserializableOutputError(encoded.reason);
    }
    // A parent that waits has not finished: onSuccess runs when it returns for good.
    if (!hooks?.only && !wait) await runner?.after({ ok: true, output: value });
    result = { t: 'done', ok: true, usage: usage() };
    if (encoded.bytes) result.output = encoded.bytes;
    else if (encoded.json !== undefined) result.outputJson = encoded.json;
    if (spawned.length > 0) result.spawned = spawned;
    if (wait) result.wait = wait;
  } catch (err) {
    // An import('jobd') in the handler's body: its code ran, so only later attempts can use the hook.
    if (!jobdUnresolved && !jobdHook && isJobdImportFailure(err)) jobdUnresolved = 'run';
    const error = await serialize(err);
    // A module that cannot load has no hooks to run (runner is set once it loaded).
    if (runner && !hooks?.only) await runner.after({ ok: false, error });
    result = { t: 'done', ok: false, error, usage: usage() };
    if (jobdUnresolved) result.jobdUnresolved = jobdUnresolved;
  }
  if (runner?.failures.length) result.hookErrors = runner.failures;
  if (runner?.abandoned) result.hookAbandoned = true;
  try {
    restore?.();
  } catch {
    // a cwd that vanished during the job; the parent recycles nothing for this, the next job sets its own
  }
  active = false;
  if (mode === 'pooled') process.channel?.ref();
  flushProgress();
  // (set by the 'unhandledRejection' listener while the handler ran; TS cannot see that)
  const taint = taintDuringJob as { reason: unknown } | null;
  if (taint) result.taint = await serialize(taint.reason);
  await markerReady;
  writeMarkers();
  if (mode === 'pooled') {
    result.jobId = msg.jobId;
    result.runMs = performance.now() - t0;
    unreported.push(result);
    current = null;
    done();
    if (queue.length === 0 || unreported.length >= RESULTS_BATCH) report();
    else if (!reportScheduled) {
      reportScheduled = true;
      setImmediate(report);
    }
    return;
  }
  const finish = (): void => {
    current = null;
    done();
    process.exit(0);
  };
  try {
    send(result, finish);
  } catch (err) {
    // The output is encoded already and errors are plain text: only something pathological gets here.
    const reason = err instanceof Error ? err.message : String(err);
    const error = await serialize(
      new (await errors()).UnserializableOutputError(`the attempt's result could not be sent (${reason})`),
    );
    send({ t: 'done', ok: false, error, usage: result.usage }, finish);
  }
}

/** Pooled: send the results not yet reported, in one message; `then` runs once it is written. */
function report(then?: () => void): void {
  reportScheduled = false;
  if (unreported.length === 0) {
    then?.();
    return;
  }
  const done = unreported;
  unreported = [];
  try {
    send({ t: 'results', done }, then && (() => then()));
  } catch {
    // Outputs are encoded already and errors are plain text: only something pathological gets here.
    // Each result alone then, and one that still cannot travel is replaced by an error saying so.
    void Promise.all(done.map(reportAlone)).then(() => then?.());
  }
}

async function reportAlone(d: DoneMessage): Promise<void> {
  try {
    send({ t: 'results', done: [d] });
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    const error = await serialize(
      new (await errors()).UnserializableOutputError(`the attempt's result could not be sent (${reason})`),
    );
    send({ t: 'results', done: [{ t: 'done', jobId: d.jobId, ok: false, error, usage: d.usage }] });
  }
}

/** Pooled: start the next queued job unless one runs. */
function next(): void {
  if (current || stopping) return;
  let m = queue.shift();
  while (m && skipped.delete(m.jobId)) {
    writeMarkers();
    m = queue.shift();
  }
  if (!m) return;
  // Taken at once (before the marker promise resolves) so a second call cannot start another.
  current = {
    abort: new LazyAbort(),
    settled: Promise.resolve(),
    stall: () => {},
    stalled: false,
  };
  // The end-of-job marker is known before the handler starts, so the marker follows the handler's
  // return at once: output from anything the handler left scheduled comes after it (stray output).
  void markerReady
    .then(() => runJob(m))
    .then(next)
    .catch((err: unknown) => die('the sandbox child could not run the job', err));
}

function onParentMessage(m: ParentMessage): void {
  if (m.t === 'jobs') {
    if (stopping) return; // the parent gives back what it handed over to a child that stops
    queue.push(...m.jobs);
    next();
  } else if (m.t === 'job') {
    if (current || stopping) return; // isolated: one job; the parent never sends a second
    void runJob(m).catch((err: unknown) => die('the sandbox child could not run the job', err));
  } else if (m.t === 'drop') {
    // It stays in the queue, skipped: its markers keep the parent's count of ended jobs in step.
    const queued = queue.some((j) => j.jobId === m.jobId);
    if (queued) skipped.add(m.jobId);
    send({ t: 'dropped', jobId: m.jobId, ok: queued });
  } else if (m.t === 'retire') {
    stopping = true;
    if (!current) report(() => process.exit(0));
  }
}

process.on('SIGTERM', () => {
  stopping = true;
  queue.length = 0;
  // Results of finished jobs still go out: only the jobs that did not finish are lost to the stop.
  const exit = (): void => report(() => process.exit(143));
  if (!current) return exit();
  const abortReason = namedError('AbortError', 'ABORT_ERR', 'job stopped by jobd (SIGTERM)');
  current.abort.abort(abortReason);
  void current.settled.then(exit);
});

process.on('beforeExit', () => {
  const job = current;
  if (!job || job.stalled) return;
  job.stalled = true;
  void errors().then(
    ({ HandlerNeverSettledError }) => job.stall(new HandlerNeverSettledError()),
    (err: unknown) => job.stall(err as Error),
  );
});

/** Report `err` and end the process: the parent sees a crash, never a job that just stops. */
function die(what: string, err: unknown): void {
  process.stderr.write(`${what}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  void serialize(err).then((error) => send({ t: 'taint', error }, () => process.exit(70)));
  setImmediate(() => {
    if (mode === 'pooled' && !process.connected) process.exit(70);
  });
}

process.on('uncaughtException', (err) => die('uncaught exception in job handler', err));

process.on('unhandledRejection', (reason) => {
  process.stderr.write(
    `unhandled promise rejection in job handler: ${reason instanceof Error ? (reason.stack ?? reason.message) : String(reason)}\n`,
  );
  if (current) {
    taintDuringJob ??= { reason };
  } else {
    void serialize(reason).then((error) => send({ t: 'taint', error }));
  }
});

/** Whether `pid:starttime` (starttime as in /proc/<pid>/stat) is a live process. */
function processIs(idAndStart: string): boolean {
  const [pid, start] = idAndStart.split(':');
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return f[0] !== 'Z' && f[19] === start;
  } catch {
    return false;
  }
}

if (mode === 'pooled') {
  process.on('message', onParentMessage);
  // The parent went away (daemon crash or SIGKILL): nothing can report our outcome any more.
  process.on('disconnect', () => process.exit(0));
  send({ t: 'ready', usage: usage() });
} else {
  // No IPC channel to notice a dead parent by: being re-parented is the sign. The watch starts at the
  // event loop's first turn: a job that never yields to it (a no-op) has exited by then, without the
  // timer's cost (~0.7 CPU-ms of a fresh child's start); any other job is watched from then on.
  // Started by the daemon's spawn helper (spawnHelper.ts), the parent is the helper: re-parented, the
  // child goes on while the daemon (pid and start time in JOBD_SANDBOX_DAEMON) is still alive, as the
  // daemon still holds its socket and sees its exit.
  const parent = process.ppid;
  const daemon = process.env.JOBD_SANDBOX_DAEMON;
  delete process.env.JOBD_SANDBOX_DAEMON;
  setImmediate(() => {
    setInterval(() => {
      if (process.ppid !== parent && !(daemon && processIs(daemon))) process.exit(0);
    }, 1000).unref();
  });
  // The one job arrives on fd 3 (the parent shuts its side for writing after it); reading blocks until then.
  // A child started ahead of its job waits here: nothing of the handler is loaded yet.
  const input = readFileSync(3);
  // EOF without a job: the daemon discarded this child, or died, before sending one. Nothing ran.
  if (input.length < 4) process.exit(0);
  onParentMessage(decodeBody(input.subarray(4, 4 + input.readUInt32BE(0)), v8) as ParentMessage);
}
