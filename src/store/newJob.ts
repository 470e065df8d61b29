import { ValidationError } from '../errors.js';
import type { DependencyFailurePolicy, EnqueueOptions, JobId, JobState, WaitingFor } from '../types.js';
import { bsonSize, formatBytes, MAX_PARAMS_BYTES, whyUnstorable } from './encoding.js';

/** What the store needs to insert a job; every field resolved. */
export interface NewJob {
  type: string;
  params: unknown;
  priority: number;
  runAt: Date;
  /** null: the job type's setting on the daemon that runs it. */
  maxAttempts: number | null;
  timeoutMs: number | null;
  dedupeKey?: string;
  datasetUuid?: string;
  tags?: string[];
  /** Start in 'waiting' (dependencies unmet) instead of 'queued'. */
  waiting?: boolean;
  /** Created by a schedule: its name, and the fire time's unique key. */
  scheduleId?: string;
  fireKey?: string;
  /** The job's id, when chosen before it is written (workflows, spawned children). */
  id?: JobId;
  dependsOn?: JobId[];
  onDependencyFailure?: DependencyFailurePolicy;
  waitingFor?: WaitingFor;
  workflowId?: string;
  workflowKey?: string;
  parentId?: JobId;
  spawnKey?: string;
}

export const DEPENDENCY_POLICIES: readonly DependencyFailurePolicy[] = ['fail', 'skip', 'ignore'];
/** Most dependencies one job may list (a fan-in beyond this belongs in stages). */
export const MAX_DEPENDENCIES = 100_000;

function checkDependencies(opts: EnqueueOptions, job: NewJob): void {
  if (opts.onDependencyFailure !== undefined) {
    if (!DEPENDENCY_POLICIES.includes(opts.onDependencyFailure)) {
      throw new ValidationError(
        `onDependencyFailure must be one of ${DEPENDENCY_POLICIES.join(', ')}; got ${JSON.stringify(opts.onDependencyFailure)}`,
      );
    }
    job.onDependencyFailure = opts.onDependencyFailure;
  }
  if (opts.dependsOn === undefined) return;
  const deps = opts.dependsOn;
  if (!Array.isArray(deps) || deps.some((d) => typeof d !== 'string' || d === '')) {
    throw new ValidationError(`dependsOn must be an array of job ids; got ${JSON.stringify(deps)}`);
  }
  if (deps.length > MAX_DEPENDENCIES) {
    throw new ValidationError(`dependsOn lists ${deps.length} jobs; at most ${MAX_DEPENDENCIES} are allowed`);
  }
  const unique = [...new Set(deps)];
  if (unique.length > 0) {
    job.dependsOn = unique;
    job.waiting = true;
    job.waitingFor = 'dependencies';
  }
}

/** Defaults for what the enqueue options leave out. Without maxAttempts/timeoutMs the job stores null. */
export interface JobDefaults {
  priority: number;
  maxAttempts?: number;
  timeoutMs?: number;
}

function positiveInt(field: string, v: number, min: number): number {
  if (!Number.isInteger(v) || v < min) {
    throw new ValidationError(`${field} must be an integer >= ${min}; got ${JSON.stringify(v)}`);
  }
  return v;
}

function optionalPositiveInt(field: string, v: number | undefined, min: number): number | null {
  return v === undefined ? null : positiveInt(field, v, min);
}

/** Params MongoDB can store as given, within jobd's share of the document for them. */
function checkParams(params: unknown): void {
  const why = whyUnstorable(params, 'params');
  if (why) throw new ValidationError(why);
  const size = bsonSize({ params });
  if (size > MAX_PARAMS_BYTES) {
    throw new ValidationError(
      `params take ${formatBytes(size)} as BSON, over jobd's limit of ${formatBytes(MAX_PARAMS_BYTES)} ` +
        `(MongoDB stores at most 16 MiB per document, and the job's result and history need the rest)`,
    );
  }
}

/** Resolve EnqueueOptions against defaults (the job type's, else the global ones) and validate them. */
export function resolveNewJob(
  type: string,
  params: unknown,
  opts: EnqueueOptions,
  defaults: JobDefaults,
  now: Date,
): NewJob {
  if (typeof type !== 'string' || type.trim() === '') {
    throw new ValidationError(`type must be a non-empty string; got ${JSON.stringify(type)}`);
  }
  let runAt = now;
  if (opts.runAt !== undefined) {
    if (!(opts.runAt instanceof Date) || Number.isNaN(opts.runAt.getTime())) {
      throw new ValidationError(`runAt must be a valid Date; got ${String(opts.runAt)}`);
    }
    runAt = opts.runAt;
  } else if (opts.delayMs !== undefined) {
    if (!Number.isFinite(opts.delayMs) || opts.delayMs < 0) {
      throw new ValidationError(`delayMs must be a number >= 0; got ${JSON.stringify(opts.delayMs)}`);
    }
    runAt = new Date(now.getTime() + opts.delayMs);
  }
  if (params !== undefined) checkParams(params);
  const job: NewJob = {
    type,
    params: params === undefined ? null : params,
    priority: positiveInt('priority', opts.priority ?? defaults.priority, 1),
    runAt,
    maxAttempts: optionalPositiveInt('maxAttempts', opts.maxAttempts ?? defaults.maxAttempts, 1),
    timeoutMs: optionalPositiveInt('timeoutMs', opts.timeoutMs ?? defaults.timeoutMs, 1),
  };
  if (opts.dedupeKey !== undefined) {
    if (typeof opts.dedupeKey !== 'string' || opts.dedupeKey === '') {
      throw new ValidationError(
        `dedupeKey must be a non-empty string; got ${JSON.stringify(opts.dedupeKey)}`,
      );
    }
    job.dedupeKey = opts.dedupeKey;
  }
  if (opts.datasetUuid !== undefined) job.datasetUuid = String(opts.datasetUuid);
  if (opts.tags !== undefined) {
    if (!Array.isArray(opts.tags) || opts.tags.some((t) => typeof t !== 'string')) {
      throw new ValidationError(`tags must be an array of strings; got ${JSON.stringify(opts.tags)}`);
    }
    job.tags = [...opts.tags];
  }
  checkDependencies(opts, job);
  return job;
}

export function initialState(job: NewJob): JobState {
  return job.waiting ? 'waiting' : 'queued';
}
