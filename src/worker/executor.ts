/**
 * Runs one claimed job through the sandbox (or inline, in this process, when its type asks) and turns its outcome into a Settlement (what the store
 * should write), or null when nothing may be written (the lease is lost).
 */
import { join } from 'node:path';
import { JobTimeoutError, UnencodableResultError, UnknownJobTypeError, serializeError } from '../errors.js';
import {
  noOneToTell,
  ownDependencies,
  whyResultUnstorable,
  type SettleBase,
  type Settlement,
} from '../store/index.js';
import type { HookFailure } from '../sandbox/protocol.js';
import type { InlineRunner } from './inlineRunner.js';
import type { LazyAbort } from '../sandbox/lazyAbort.cjs';
import { checkOutput, daemonCheckedType, parseForRun } from './typedChecks.js';
import type { DefinedJobType } from '../jobs/defineJobType.js';
import type { PrestartSpec } from '../sandbox/prestart.js';
import type { JobFamily, RunOutcome, RunRequest, Sandbox, SpawnedChild } from '../sandbox/types.js';
import type { ResolvedConfig } from '../config/types.js';
import { SOURCE_READERS } from '../config/jobTypes.js';
import { failedAttempt, retrySettingsFor, type RetrySettings } from '../retryPolicy.js';
import type { HookError, JobDoc, JobTypeDefinition, ResourceAllocation, SerializedError } from '../types.js';

/** Why the daemon aborted a running job. */
export type AbortCause = 'lost' | 'shutdown';

export interface Execution {
  job: JobDoc;
  token: string;
  /** The execution's abort; its AbortSignal is made only when something asks for it. */
  controller: LazyAbort;
  abortCause: AbortCause | null;
  /** Children the handler spawned: written before its outcome. */
  spawned?: SpawnedChild[];
  /** What the job is told of its family (fetched at claim time). */
  family?: JobFamily;
  /** What it took of the daemon's resources (its type declares needs). */
  allocation?: ResourceAllocation;
}

/**
 * What every job of a configuration gets in its environment, built once: the data dirs, the data
 * settings the dataset types use (paths and limits, never credentials), and the site programs that
 * external_program runs. Their programs get half the kill grace: the other half lets the handler
 * remove its temporaries before the sandbox kills the child.
 */
const jobEnvs = new WeakMap<ResolvedConfig, Readonly<Record<string, string>>>();
function envFor(config: ResolvedConfig): Readonly<Record<string, string>> {
  let env = jobEnvs.get(config);
  if (!env) {
    env = Object.freeze({
      JOBD_DATA_DIRS: JSON.stringify(config.dataDirs),
      JOBD_DATA_SETTINGS: JSON.stringify({
        ...config.data,
        killGraceMs: Math.floor(config.worker.killGraceMs / 2),
      }),
      JOBD_PROGRAMS: JSON.stringify(config.programs ?? {}),
    });
    jobEnvs.set(config, env);
  }
  return env;
}

/** Only the source readers' jobs get the tabular sources (credentials): see SOURCE_READERS. */
const sourceEnvs = new WeakMap<ResolvedConfig, Readonly<Record<string, string>>>();
function envWithSources(config: ResolvedConfig): Readonly<Record<string, string>> {
  let env = sourceEnvs.get(config);
  if (!env) {
    env = Object.freeze({
      ...envFor(config),
      JOBD_TABULAR_SOURCES: JSON.stringify(config.tabular?.sources ?? {}),
    });
    sourceEnvs.set(config, env);
  }
  return env;
}

/**
 * The job's environment: the configuration's, plus CUDA_VISIBLE_DEVICES naming the GPUs given to it
 * when its type needs GPUs (so CUDA programs it starts see those and no others). A type without GPU
 * needs keeps the daemon's own CUDA_VISIBLE_DEVICES, if any.
 */
function jobEnv(
  config: ResolvedConfig,
  type: string,
  allocation: ResourceAllocation | undefined,
): Record<string, string> {
  const env = SOURCE_READERS.has(type) ? envWithSources(config) : envFor(config);
  if (!allocation || allocation.gpus.length === 0) return env;
  return { ...env, CUDA_VISIBLE_DEVICES: allocation.gpus.join(',') };
}

/** The log directory as join() normalises it, with its separator (per configuration, made once). */
const logDirs = new WeakMap<ResolvedConfig, string>();
const PLAIN_ID = /^[A-Za-z0-9_-]+$/;

/**
 * join(config.logDir, `${id}.log`), without normalising the directory again per job: for an id of
 * plain characters (no separator, no dot) the join is the normalised directory and the name.
 */
export function jobLogFile(config: ResolvedConfig, id: string): string {
  if (!PLAIN_ID.test(id)) return join(config.logDir, `${id}.log`);
  let dir = logDirs.get(config);
  if (dir === undefined) {
    dir = join(config.logDir, 'x').slice(0, -1);
    logDirs.set(config, dir);
  }
  return `${dir}${id}.log`;
}

function runRequestFor(
  job: JobDoc,
  def: JobTypeDefinition,
  config: ResolvedConfig,
  random: number,
  family: JobFamily | undefined,
  allocation: ResourceAllocation | undefined,
): RunRequest {
  return {
    family: family ?? { resumes: job.resumes ?? 0 },
    jobId: job._id,
    type: job.type,
    attempt: job.attempts,
    handler: def.handler,
    // An inline job never reaches the sandbox; the hook that may follow its timeout runs isolated.
    mode: def.mode === 'isolated' ? 'isolated' : 'pooled',
    params: job.params,
    timeoutMs: job.timeoutMs ?? def.timeoutMs,
    killGraceMs: config.worker.killGraceMs,
    ...(def.memoryLimitBytes !== undefined ? { memoryLimitBytes: def.memoryLimitBytes } : {}),
    logFile: jobLogFile(config, job._id),
    logTailBytes: config.worker.logTailBytes,
    progressIntervalMs: config.worker.progressIntervalMs,
    // The child decides about onRetry/onFailure as failSettlement will: same inputs, same random draw.
    hooks: {
      timeoutMs: config.worker.hookTimeoutMs,
      maxAttempts: job.maxAttempts ?? def.maxAttempts,
      retry: def.retry,
      random,
    },
    // Typed job types re-check their input's paths against these when the job starts (defineJobType).
    env: jobEnv(config, job.type, allocation),
    ...(allocation ? { allocation } : {}),
  };
}

/**
 * What the job's isolated child is started with, as its run will ask for it (runRequestFor): for a
 * child started ahead of the job (sandbox/prestart.ts). Null when the job does not run in an isolated
 * child.
 */
export function isolatedSpawnOf(
  job: JobDoc,
  config: ResolvedConfig,
  allocation: ResourceAllocation | undefined,
): PrestartSpec | null {
  const def = config.jobTypes[job.type];
  if (!def || def.mode !== 'isolated' || def.system) return null;
  return {
    jobId: job._id,
    handler: def.handler,
    logFile: jobLogFile(config, job._id),
    env: jobEnv(config, job.type, allocation),
  };
}

export interface ExecuteDeps {
  config: ResolvedConfig;
  sandbox: Sandbox;
  /** Runs the jobs of inline types in this process. */
  inline: Pick<InlineRunner, 'run'>;
  now(): Date;
  random(): number;
  onProgress(percent: number, message?: string): void;
  /**
   * Called before anything of an inline job first writes to its log file: the inline run's first line,
   * or the isolated child that runs a hook after it (the log shipper waits for this to read where the
   * file starts; a pooled or isolated job's child may write at any time, so for those it is not asked).
   */
  onOutput?(): void;
  /** Runs one of jobd's own jobs (def.system) in this process: its result. */
  runSystem?(def: JobTypeDefinition, job: JobDoc, signal: AbortSignal): Promise<unknown>;
}

/** Longest error message and stack kept per attempt: a job's history must fit in its document. */
const MAX_ERROR_TEXT = 16 * 1024;

function bounded(text: string): string {
  if (text.length <= MAX_ERROR_TEXT) return text;
  return `${text.slice(0, MAX_ERROR_TEXT)}… (${text.length - MAX_ERROR_TEXT} more characters cut)`;
}

function boundError(e: SerializedError): SerializedError {
  const out: SerializedError = { name: bounded(String(e.name)), message: bounded(String(e.message)) };
  if (e.code !== undefined) out.code = bounded(String(e.code));
  if (e.stack !== undefined) out.stack = bounded(String(e.stack));
  if (e.details !== undefined) {
    // Details are kept whole or not at all: a cut JSON document would mislead.
    const size = JSON.stringify(e.details)?.length ?? 0;
    out.details =
      size <= MAX_ERROR_TEXT
        ? e.details
        : { cut: `the details (${size} characters of JSON) were too long to keep` };
  }
  return out;
}

/** A timeout is always recorded as JobTimeoutError / JOBD_TIMEOUT, whatever text the sandbox chose. */
function attemptError(
  outcome: Extract<RunOutcome, { status: 'failed' }>,
  timeoutMs: number,
): SerializedError {
  if (outcome.reason === 'timeout') {
    const t = serializeError(new JobTimeoutError(timeoutMs));
    return { name: t.name, code: t.code, message: outcome.error.message || t.message };
  }
  const e = { ...outcome.error };
  if (outcome.reason === 'crash' && (outcome.exitCode != null || outcome.signal)) {
    const how = outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.exitCode}`;
    if (!e.message.includes(how)) e.message = `${e.message} (${how})`;
  }
  return e;
}

function failSettlement(
  ex: Execution,
  error: SerializedError,
  settings: RetrySettings,
  now: Date,
  random: number,
  extra: { resources?: RunOutcome['resources']; logTail?: string; hookErrors?: HookError[] } = {},
): Extract<Settlement, { kind: 'fail' }> {
  const d = failedAttempt(ex.job, error, settings, random);
  return {
    kind: 'fail',
    jobId: ex.job._id,
    token: ex.token,
    attempt: ex.job.attempts,
    seq: ex.job.seq,
    error: boundError(error),
    retryAt: d.retry ? new Date(now.getTime() + d.delayMs) : null,
    failedAt: now,
    ...(d.retry ? { delayMs: d.delayMs } : {}),
    ...(ex.job.workflowId ? { workflowId: ex.job.workflowId } : {}),
    ...noOneToTell(ex.job),
    ...extra,
  };
}

/** One of jobd's own jobs (def.system), run by the daemon itself; its result or error as a child's would be. */
async function systemOutcome(def: JobTypeDefinition, ex: Execution, deps: ExecuteDeps): Promise<RunOutcome> {
  const t0 = performance.now();
  try {
    if (!deps.runSystem) throw new Error(`this process cannot run jobd's own job type ${def.name}`);
    const output = await deps.runSystem(def, ex.job, ex.controller.signal);
    return { status: 'completed', output, resources: { wallMs: performance.now() - t0 }, logTail: '' };
  } catch (err) {
    const error = serializeError(err);
    return {
      status: 'failed',
      error,
      resources: { wallMs: performance.now() - t0 },
      logTail: '',
      reason: ex.controller.aborted ? 'aborted' : 'error',
    };
  }
}

function asFailure(error: unknown): { ok: false; error: unknown } {
  return { ok: false, error };
}

/** A completed outcome whose output the type's schema refuses fails with JOBD_INVALID_OUTPUT. */
async function checkedOutcome(
  def: DefinedJobType,
  outcome: Extract<RunOutcome, { status: 'completed' }>,
): Promise<RunOutcome> {
  const c = await checkOutput(def, outcome.output).catch(asFailure);
  if (c.ok) return { ...outcome, output: c.output };
  return {
    status: 'failed',
    error: serializeError(c.error),
    resources: outcome.resources,
    logTail: outcome.logTail,
    reason: 'error',
    ...(outcome.hookErrors ? { hookErrors: outcome.hookErrors } : {}),
  };
}

export async function executeJob(ex: Execution, deps: ExecuteDeps): Promise<Settlement | null> {
  const { job } = ex;
  const def = deps.config.jobTypes[job.type];
  if (!def) {
    const err = serializeError(new UnknownJobTypeError(job.type, Object.keys(deps.config.jobTypes).sort()));
    delete err.stack;
    return failSettlement(ex, err, retrySettingsFor(deps.config, job.type), deps.now(), deps.random());
  }
  // Drawn before the run: the child's hooks and the settlement below decide with the same value.
  const random = deps.random();
  let req = runRequestFor(job, def, deps.config, random, ex.family, ex.allocation);
  let outcome: RunOutcome;
  // A typed built-in type in an isolated child: its input and output are checked here (typedChecks.ts).
  let typed: DefinedJobType | null = null;
  try {
    if (def.mode === 'isolated' && !def.system) {
      const t = daemonCheckedType(def.handler);
      typed = t instanceof Promise ? await t : t;
    }
    const parsed = typed ? await parseForRun(typed, req.params, req.env).catch(asFailure) : null;
    if (parsed && !parsed.ok) {
      outcome = {
        status: 'failed',
        error: serializeError(parsed.error),
        resources: {},
        logTail: '',
        reason: 'error',
      };
    } else {
      if (parsed) req = { ...req, params: parsed.input, checks: { paths: parsed.paths } };
      outcome = def.system
        ? await systemOutcome(def, ex, deps)
        : def.mode === 'inline'
          ? await deps.inline.run(req, {
              onProgress: deps.onProgress,
              // One controller for the execution and the handler (see InlineHooks).
              controller: ex.controller,
              ...(deps.onOutput ? { onOutput: deps.onOutput } : {}),
            })
          : await deps.sandbox.run(req, { onProgress: deps.onProgress, abort: ex.controller });
      if (typed && outcome.status === 'completed' && !outcome.wait)
        outcome = await checkedOutcome(typed, outcome);
    }
  } catch (err) {
    // The sandbox rejects only when it is closed (shutdown): treat like an abort.
    if (ex.abortCause === null) ex.abortCause = 'shutdown';
    outcome = {
      status: 'failed',
      error: serializeError(err),
      resources: {},
      logTail: '',
      reason: 'aborted',
    };
  }
  if (ex.abortCause === 'lost') return null;
  const at = deps.now();
  // Most attempts have no hook errors: no array, no spreads of empty objects per job.
  const hookErrors = outcome.hookErrors?.length
    ? outcome.hookErrors.map((h) => hookError(h, job.attempts, at))
    : undefined;
  const base: SettleBase = {
    jobId: job._id,
    token: ex.token,
    attempt: job.attempts,
    seq: job.seq,
    resources: outcome.resources,
    logTail: outcome.logTail,
  };
  if (hookErrors) base.hookErrors = hookErrors;
  if (job.workflowId) base.workflowId = job.workflowId;
  if (noOneToTell(job).noDependents) base.noDependents = true;
  // What a failure settlement carries besides the error (made only when the attempt failed).
  const extra = () => ({
    resources: outcome.resources,
    logTail: outcome.logTail,
    ...(hookErrors ? { hookErrors } : {}),
  });
  if (outcome.status === 'completed') {
    // Checked here, before the outcome joins a batch: a result MongoDB cannot store fails this
    // attempt alone, with a message naming what is wrong and where.
    const why = whyResultUnstorable(
      job as unknown as Record<string, unknown>,
      outcome.output,
      outcome.logTail,
    );
    if (!why) {
      if (outcome.spawned) ex.spawned = outcome.spawned;
      // The children (and which of them it waits for) are filled in once they are written.
      if (outcome.wait) {
        const upstream = ownDependencies(job);
        return {
          kind: 'suspend',
          ...base,
          children: [],
          childPolicy: outcome.wait,
          ...(upstream?.length ? { upstream } : {}),
        };
      }
      return { kind: 'complete', ...base, result: outcome.output };
    }
    const err = serializeError(new UnencodableResultError(why));
    delete err.stack;
    // The child ran onSuccess; the attempt failed after all, so the hook that follows runs too.
    return withAfterHooks(failSettlement(ex, err, def, deps.now(), random, extra()), req, deps);
  }
  // Its pooled child ended for another job's sake before it ran this one (or before it reported it):
  // back to the queue with the attempt given back, as at a graceful shutdown.
  if (outcome.reason === 'released') {
    return {
      kind: 'requeue',
      ...base,
      message: 'its pooled child ended while the job waited in it; requeued with the attempt given back',
    };
  }
  if (ex.abortCause === 'shutdown' && outcome.reason === 'aborted') {
    return {
      kind: 'requeue',
      ...base,
      message: 'shutdown grace passed; requeued with the attempt given back',
    };
  }
  const settlement = failSettlement(ex, attemptError(outcome, req.timeoutMs), def, deps.now(), random, extra());
  // A killed child ran no hook after its handler: a fresh short-lived child runs it.
  if (outcome.reason === 'timeout' || outcome.reason === 'crash' || outcome.reason === 'memory') {
    return withAfterHooks(settlement, req, deps);
  }
  return settlement;
}

/** Start-up allowance of the short-lived child that runs a hook after a killed attempt. */
const HOOK_CHILD_START_MS = 15_000;

function hookError(h: HookFailure, attempt: number, at: Date): HookError {
  return { ...boundError(h.error), hook: h.hook, attempt, at };
}

/**
 * Run onRetry or onFailure (whichever the settlement decided) in a fresh isolated child that loads
 * the job's module and runs that hook only, within worker.hookTimeoutMs. Its failures join the
 * settlement's hookErrors; the settlement itself is unchanged.
 */
async function withAfterHooks(
  s: Extract<Settlement, { kind: 'fail' }>,
  req: RunRequest,
  deps: ExecuteDeps,
): Promise<Settlement> {
  if (!req.hooks) return s;
  const hooks = {
    ...req.hooks,
    only: s.retryAt
      ? { hook: 'onRetry' as const, error: s.error, delayMs: s.delayMs ?? 0 }
      : { hook: 'onFailure' as const, error: s.error },
  };
  let outcome: RunOutcome;
  deps.onOutput?.();
  try {
    outcome = await deps.sandbox.run(
      {
        ...req,
        mode: 'isolated',
        hooks,
        // The child bounds the hook itself; this outer bound also covers the child's start-up.
        timeoutMs: req.hooks.timeoutMs + HOOK_CHILD_START_MS,
        memoryLimitBytes: undefined,
      },
      { onProgress: () => {} },
    );
  } catch {
    return s; // the sandbox is closing: no hook
  }
  const at = deps.now();
  const found: HookError[] = (outcome.hookErrors ?? []).map((h) => hookError(h, s.attempt, at));
  if (outcome.status === 'failed') {
    // Loading the module or the child itself failed: the hook could not run.
    found.push(hookError({ hook: hooks.only.hook, error: outcome.error }, s.attempt, at));
  }
  return found.length ? { ...s, hookErrors: [...(s.hookErrors ?? []), ...found] } : s;
}
