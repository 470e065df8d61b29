/**
 * jobd's shared vocabulary. Every layer (store, worker, sandbox, cli, library API) speaks these types.
 * docs/state-machine.md is the authority on which state transitions are legal.
 */

export const JOB_STATES = [
  'waiting',
  'queued',
  'running',
  'retrying',
  'completed',
  'failed',
  'cancelled',
] as const;
export type JobState = (typeof JOB_STATES)[number];

/** States a job never leaves on its own (only an operator's retry re-queues it). */
export const FINISHED_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];
/** States from which a worker may claim a job (once its runAt is due). */
export const CLAIMABLE_STATES: readonly JobState[] = ['queued', 'retrying'];

export type JobId = string;

/** A serialisable error: how errors travel across the child-process boundary and into the database. */
export interface SerializedError {
  name: string;
  code?: string;
  message: string;
  stack?: string;
  /** Structured facts an error carries (data_validation's problem list), as JSON. */
  details?: unknown;
}

export interface JobError extends SerializedError {
  at: Date;
  attempt: number;
  worker?: string;
}

export interface JobLease {
  /** Worker id (host:pid:random) that holds the job. */
  owner: string;
  /** Fencing token: every write to a running job filters on it. */
  token: string;
  expiresAt: Date;
}

export interface JobProgress {
  percent: number;
  message?: string;
  updatedAt: Date;
}

export interface JobResources {
  peakRssBytes?: number;
  cpuMs?: number;
  wallMs?: number;
}

export interface JobDoc {
  _id: JobId;
  type: string;
  params: unknown;
  state: JobState;
  /** 1 is the highest priority, as the legacy service numbers it. */
  priority: number;
  runAt: Date;
  attempts: number;
  /** null: the job type's setting on the daemon that runs it (the enqueuer did not know the type). */
  maxAttempts: number | null;
  /** null: the job type's setting on the daemon that runs it. */
  timeoutMs: number | null;
  lease?: JobLease | null;
  progress?: JobProgress | null;
  result?: unknown;
  lastError?: JobError | null;
  /** Bounded history of failed attempts, newest last. */
  errors: JobError[];
  resources?: JobResources | null;
  /** Last few KB of the job's stdout/stderr. */
  logTail?: string | null;
  createdAt: Date;
  updatedAt: Date;
  startedAt?: Date | null;
  finishedAt?: Date | null;
  datasetUuid?: string | null;
  dedupeKey?: string | null;
  tags: string[];
  /**
   * How many state transitions the job has made; its history events are numbered 1..seq, so a
   * missing event shows as a gap (absent on jobs created by older versions).
   */
  seq?: number;
  /** Set on a job a schedule created: the schedule's name. */
  scheduleId?: string;
  /** `<schedule>@<ISO fire time>`: unique for ever, so a fire time creates at most one job. */
  fireKey?: string;
  /** Lifecycle hooks that threw or timed out (newest last, bounded); they never change the outcome. */
  hookErrors?: HookError[];
  /** Jobs that must finish before this one runs (a parent waiting for its children lists them here). */
  dependsOn?: JobId[];
  /** What this job does when a dependency fails for good or is cancelled (default 'fail'). */
  onDependencyFailure?: DependencyFailurePolicy;
  /**
   * A hint: dependencies not yet satisfied. Decremented as they finish; the release itself is decided
   * by an exact check of the dependencies' states, so a hint that is too low costs a check, never an
   * early release.
   */
  depsLeft?: number;
  /** Why a waiting job waits. */
  waitingFor?: WaitingFor | null;
  /** Finished (or suspended) and its dependents, workflow and parent not yet told (see releaseAfter). */
  releasePending?: boolean;
  /**
   * Some job names this one in its dependsOn (set before that job is written, never cleared). A job
   * without it, a workflow or a parent has no one to tell when it finishes: its settle skips the release.
   */
  hasDependents?: boolean;
  /** On a job with dependsOn: its dependencies carry hasDependents (older versions did not set it). */
  dependenciesMarked?: boolean;
  /** The dependency whose failure failed or skipped this job (cleared when an operator retry re-arms it). */
  blockedBy?: JobId | null;
  workflowId?: string | null;
  /** The job's key within its workflow. */
  workflowKey?: string | null;
  /** The job that spawned this one. */
  parentId?: JobId | null;
  /** `<parentId>/<resumes>/<key>`: the same parent run spawns the same children again, not copies. */
  spawnKey?: string;
  /** On a parent: what a child that fails for good does to it. */
  childPolicy?: ChildFailurePolicy;
  /** How many times a parent suspended to wait for children. */
  resumes?: number;
  /**
   * A parent's own dependencies, kept while it waits for its children (dependsOn then lists the
   * children), so it is told their results again when it resumes.
   */
  upstream?: JobId[];
}

export type HookName = 'onStart' | 'onSuccess' | 'onFailure' | 'onRetry';

export interface HookError extends SerializedError {
  hook: HookName;
  attempt: number;
  at: Date;
}

export type CatchUpPolicy = 'skip' | 'once' | 'all';

/** How a schedule fires: a cron expression (in a timezone) or a fixed interval. */
export interface ScheduleDefinition {
  cron?: string;
  everyMs?: number;
  /** IANA timezone for cron; UTC when absent. */
  timezone?: string;
  type: string;
  params: unknown;
  priority?: number;
  /** Fires missed while every daemon was down: none, the latest one, or each of them (up to catchUpMax). */
  catchUp: CatchUpPolicy;
  catchUpMax: number;
}

export interface ScheduleDoc extends ScheduleDefinition {
  /** The schedule's name. */
  _id: string;
  paused: boolean;
  /** The next fire time not yet turned into a job. */
  nextFireAt: Date;
  lastFireAt: Date | null;
  source: 'settings' | 'runtime';
  createdAt: Date;
  updatedAt: Date;
}

export type DependencyFailurePolicy = 'fail' | 'skip' | 'ignore';
export type ChildFailurePolicy = 'fail' | 'ignore' | 'continue';
export type WaitingFor = 'dependencies' | 'children' | 'submit';

export const WORKFLOW_STATES = ['submitting', 'running', 'completed', 'failed', 'cancelled'] as const;
export type WorkflowState = (typeof WORKFLOW_STATES)[number];

export interface WorkflowDoc {
  _id: string;
  name: string;
  state: WorkflowState;
  jobCount: number;
  /** Each job's key within the workflow → its job id (ids are chosen before anything is written). */
  keys: Record<string, JobId>;
  createdAt: Date;
  updatedAt: Date;
  finishedAt?: Date | null;
  /** Why a workflow was cancelled or failed. */
  reason?: string | null;
}

/** A child as its parent sees it when it resumes (ctx.children). */
export interface ChildInfo {
  id: JobId;
  key: string;
  type: string;
  state: JobState;
  result?: unknown;
  error?: SerializedError | null;
}

/** What a handler passes to ctx.spawn for each child. */
export interface SpawnSpec {
  /** Names the child among its siblings (default: its position among this run's spawns). */
  key?: string;
  type: string;
  params?: unknown;
  options?: Pick<EnqueueOptions, 'priority' | 'maxAttempts' | 'timeoutMs' | 'tags'>;
  /**
   * Keys of siblings spawned before it in the same run that must complete first (a chain or a DAG of
   * children); the child waits until then, as a job with dependsOn does.
   */
  dependsOn?: string[];
  onDependencyFailure?: DependencyFailurePolicy;
}

/** The value a handler returns to wait for its children (from ctx.waitForChildren). */
export interface WaitForChildren {
  __jobdWaitForChildren: { onChildFailure: ChildFailurePolicy };
}

export interface JobEventDoc {
  /** `<jobId>:<seq>` for numbered events, so an event is stored once whoever writes it. */
  _id?: unknown;
  jobId: JobId;
  /** The job's transition count after this transition (see JobDoc.seq). */
  seq?: number;
  from: JobState | null;
  to: JobState;
  at: Date;
  worker?: string | null;
  attempt: number;
  message?: string | null;
  /**
   * Not written by the transition's own writer, which stopped before recording it: written later by
   * the rescuer, or shown from the job document where the history has a gap.
   */
  recovered?: boolean;
}

export interface WorkerDoc {
  _id: string;
  host: string;
  pid: number;
  version: string;
  startedAt: Date;
  heartbeatAt: Date;
  concurrency: number;
  /** The job types this daemon runs: it claims only these (absent on daemons of older versions). */
  types?: string[];
  /**
   * What this daemon can give jobs (settings `resources`) and what its jobs hold now (as of the last
   * heartbeat). Absent on daemons of older versions.
   */
  resources?: ResourceCapacity & { used: ResourceAllocation };
  /** Job types it knows but never claims: their needs exceed its capacity. */
  unfitTypes?: { type: string; why: string }[];
  running: JobId[];
  state: 'running' | 'draining' | 'stopped';
  /** A program that pulls jobs over the HTTP API or receive() (id `ext:<name>`), not a daemon. */
  external?: boolean;
}

/**
 * Where a job's handler runs: a pooled child, a fresh isolated child, or (a type asks for it) inline in
 * the daemon's own process. See docs/configuration.md.
 */
export type ExecutionMode = 'pooled' | 'isolated' | 'inline';

/** What one job of a type needs while it runs (absent or 0: nothing of that resource). */
export interface ResourceNeeds {
  cpus?: number;
  memoryMb?: number;
  /** How many GPUs; the daemon picks which. */
  gpus?: number;
}

/** What a daemon can give its jobs (settings `resources`). */
export interface ResourceCapacity {
  cpus: number;
  memoryMb: number;
  /** GPU ids, as CUDA_VISIBLE_DEVICES names them. */
  gpus: number[];
}

/** What one attempt holds while it runs: its type's needs, with the GPU ids chosen for it. */
export interface ResourceAllocation {
  cpus: number;
  memoryMb: number;
  gpus: number[];
}

export interface RetryPolicy {
  /** Delay before the first retry, ms. */
  baseMs: number;
  /** Multiplier per further attempt. */
  factor: number;
  /** Largest delay, ms. */
  capMs: number;
  /** 0..1: share of the delay that is randomised ("full jitter" at 1). */
  jitter: number;
}

/** How a job type is registered with the daemon. */
export interface JobTypeDefinition {
  name: string;
  /** Absolute path or package specifier of the module whose default (or `handler`) export runs the job. */
  handler: string;
  mode: ExecutionMode;
  timeoutMs: number;
  maxAttempts: number;
  priority: number;
  /** Max jobs of this type running at once on one daemon (undefined: only the global limit). */
  concurrency?: number;
  /** Kill the child when its RSS exceeds this many bytes. */
  memoryLimitBytes?: number;
  /** What each job needs while it runs: a daemon claims it only when its free capacity covers this. */
  needs?: ResourceNeeds;
  retry: RetryPolicy;
  /** The queue its jobs belong to (absent: the module's queue, else the type's name). */
  queue?: string;
  /** One of jobd's own jobs (src/config/systemJobs.ts): the daemon runs it itself, not in a child. */
  system?: 'retention';
}

export interface EnqueueOptions {
  priority?: number;
  runAt?: Date;
  /** Delay from now, ms (ignored when runAt is given). */
  delayMs?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  dedupeKey?: string;
  datasetUuid?: string;
  tags?: string[];
  /** Ids of jobs that must complete first; the job waits until then (see docs/state-machine.md). */
  dependsOn?: JobId[];
  onDependencyFailure?: DependencyFailurePolicy;
}

/** What a handler receives besides its params. */
export interface JobContext {
  jobId: JobId;
  type: string;
  attempt: number;
  /** Report progress; the daemon stores at most one update per job per second. */
  progress(percent: number, message?: string): void;
  /** Aborted when the job must stop (timeout, lost lease, shutdown). */
  signal: AbortSignal;
  logger: {
    info(msg: string, extra?: Record<string, unknown>): void;
    warn(msg: string, extra?: Record<string, unknown>): void;
    error(msg: string, extra?: Record<string, unknown>): void;
  };
  paths: { log: string; work?: string };
  /** Results of the job's dependencies, by workflow key (or job id outside a workflow). */
  dependencies?: Record<string, unknown>;
  /** True when a parent runs again after waiting for its children. */
  resumed?: boolean;
  /** A resumed parent's children, in spawn order. */
  children?: ChildInfo[];
  /**
   * What this attempt was given when its type declares needs: the GPU ids (also in
   * CUDA_VISIBLE_DEVICES), the CPUs and the memory it may use.
   */
  allocation?: ResourceAllocation;
  /**
   * Spawn child jobs; they are written when the handler returns (and only once per parent run, even
   * if the parent's attempt is repeated after a crash). Resolves to their ids.
   */
  spawn(children: SpawnSpec[]): Promise<JobId[]>;
  /** Return this to wait for the spawned children without holding a slot; the job runs again after. */
  waitForChildren(opts?: { onChildFailure?: ChildFailurePolicy }): WaitForChildren;
}

/**
 * Optional exports of a job type's module, run in the child beside the handler, each bounded by
 * worker.hookTimeoutMs. A hook that throws or times out is recorded on the job (hookErrors) and never
 * changes the job's outcome.
 */
export interface JobHooks<R = unknown> {
  onStart?(ctx: JobContext): unknown;
  onSuccess?(result: R, ctx: JobContext): unknown;
  /** After the last attempt only: the job failed for good. */
  onFailure?(error: SerializedError, ctx: JobContext): unknown;
  /** The attempt failed and the job runs again after delayMs. */
  onRetry?(error: SerializedError, attempt: number, delayMs: number, ctx: JobContext): unknown;
}

export type JobHandler<P = unknown, R = unknown> = (params: P, ctx: JobContext) => Promise<R> | R;
