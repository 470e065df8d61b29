/**
 * jobd's library API for applications: enqueue jobs and follow them. It talks to the same database
 * as the daemons; it does not run jobs (startDaemon does).
 */
import { followJobLog, readJobLog, type JobLog, type LogPiece } from './ops/jobLogs.js';
import { JobdError } from './errors.js';
import { checkInputs } from './jobs/checkInputs.js';
import { systemClock, type Clock } from './clock.js';
import { protectUri } from './redact.js';
import {
  cancel as storeCancel,
  enqueue as storeEnqueue,
  enqueueMany as storeEnqueueMany,
  eventsOf as storeEventsOf,
  get as storeGet,
  list as storeList,
  countListed,
  dependentsOf as storeDependentsOf,
  countByState as storeCountByState,
  openStore,
  resolveMongoUri,
  resolveNewJob,
  type WorkflowSummary,
  retry as storeRetry,
  editIfNotRunning,
  runNow as storeRunNow,
  deleteIfFinished,
  type JobEdit,
  cancelWorkflow as storeCancelWorkflow,
  getWorkflow as storeGetWorkflow,
  listWorkflows as storeListWorkflows,
  workflowJobs as storeWorkflowJobs,
  jobTree as storeJobTree,
  type SubmitResult,
  watchJob,
  type EnqueueResult,
  type JobDefaults,
  type ListOptions,
  type Store,
  type Watcher,
} from './store/index.js';
import * as schedules from './schedules/operations.js';
import type { ScheduleInput } from './schedules/spec.js';
import {
  FINISHED_STATES,
  type EnqueueOptions,
  type JobDoc,
  type JobEventDoc,
  type JobId,
  type JobState,
  type JobTypeDefinition,
  type RetryPolicy,
  type ScheduleDoc,
  type WorkflowDoc,
  type WorkflowState,
} from './types.js';
import { submitWorkflow, type WorkflowSpec } from './workflows/submit.js';
import { DEFAULTS } from './config/defaults.js';
import { Pull, type ReceivedJob, type ReceiveOptions } from './pull/receive.js';

export interface ClientOptions {
  /** A mongodb:// URI, or 'embedded' to reach a jobd daemon's embedded server at `embedded`. */
  mongoUri: string;
  database: string;
  embedded?: { host: string; port: number };
  /**
   * Per-type defaults for priority, maxAttempts, timeoutMs (e.g. config.jobTypes). Types given with
   * their handler module (config.jobTypes does) have their params validated against the module's
   * input schema before anything is written.
   */
  jobTypes?: Record<
    string,
    Pick<JobTypeDefinition, 'priority' | 'maxAttempts' | 'timeoutMs'> & Partial<JobTypeDefinition>
  >;
  /** The data dirs (config.dataDirs) that path fields of job inputs must stay inside. */
  dataDirs?: Record<string, string>;
  /** Defaults for types not in jobTypes. */
  defaults?: JobDefaults;
  clock?: Clock;
  appName?: string;
  /**
   * For receive(): the lease when none is asked for, failed attempts kept in job.errors, and the retry
   * policy of types not in jobTypes (defaults: jobd's worker.leaseMs, worker.errorHistory, defaults.retry).
   */
  pull?: { leaseMs?: number; errorHistory?: number; retry?: RetryPolicy };
}

/** Used when neither the job type nor the options give a value (matches jobd's settings defaults). */
/**
 * Without the job type's definition the client stores no maxAttempts/timeoutMs: the daemon that runs
 * the job applies its type's settings (a client-side guess would silently override them).
 */
export const CLIENT_DEFAULTS: JobDefaults = { priority: 5 };

export class WaitTimeoutError extends JobdError {
  constructor(id: JobId, timeoutMs: number, state: JobState) {
    super(`job ${id} did not finish within ${timeoutMs} ms (it is ${state})`, 'JOBD_WAIT_TIMEOUT');
    this.name = 'WaitTimeoutError';
  }
}

export class JobdClient {
  private constructor(
    readonly store: Store,
    private readonly opts: ClientOptions,
    private readonly clock: Clock,
  ) {}

  static async connect(opts: ClientOptions): Promise<JobdClient> {
    protectUri(opts.mongoUri);
    const store = await openStore({
      mongoUri: resolveMongoUri(opts),
      database: opts.database,
      appName: opts.appName ?? 'jobd-client',
    });
    return new JobdClient(store, opts, opts.clock ?? systemClock);
  }

  private pullApi: Pull | null = null;

  /** Pulling jobs as an external worker (receive(), and the HTTP API's worker routes). */
  get pull(): Pull {
    this.pullApi ??= new Pull({
      store: this.store,
      clock: this.clock,
      jobTypes: this.opts.jobTypes ?? {},
      retryDefaults: {
        retry: this.opts.pull?.retry ?? DEFAULTS.defaults.retry,
        maxAttempts: this.opts.defaults?.maxAttempts ?? DEFAULTS.defaults.maxAttempts,
      },
      leaseMs: this.opts.pull?.leaseMs ?? DEFAULTS.worker.leaseMs,
      errorHistory: this.opts.pull?.errorHistory ?? DEFAULTS.worker.errorHistory,
    });
    return this.pullApi;
  }

  /**
   * Claim the next due job of `queue` as an external worker, with a lease (the job runs here, not in a
   * daemon): `{ job, heartbeat(), progress(), complete(result), fail(err) }`, each write fenced by the
   * lease token. Waits up to `waitMs` for a job; null when none came. See docs/http.md (External workers).
   */
  receive(queue: string, opts: ReceiveOptions = {}): Promise<ReceivedJob | null> {
    return this.pull.receive(queue, opts);
  }

  /** A client over a store that is already open (the daemon's HTTP API shares the daemon's). */
  static over(store: Store, opts: ClientOptions): JobdClient {
    return new JobdClient(store, opts, opts.clock ?? systemClock);
  }

  private defaultsFor(type: string): JobDefaults {
    const t = this.opts.jobTypes?.[type];
    const d = this.opts.defaults ?? CLIENT_DEFAULTS;
    return t ? { priority: t.priority, maxAttempts: t.maxAttempts, timeoutMs: t.timeoutMs } : d;
  }

  /** Enqueue one job. With a dedupeKey held by an unfinished job, that job is returned (created: false). */
  async enqueue(type: string, params: unknown, opts: EnqueueOptions = {}): Promise<EnqueueResult> {
    await this.checkInputs([{ type, params }]);
    const now = this.clock.now();
    return storeEnqueue(this.store, resolveNewJob(type, params, opts, this.defaultsFor(type), now), now);
  }

  /** Params of types given with their handler module are checked against its input schema. */
  private checkInputs(jobs: { type: string; params: unknown; where?: string }[]): Promise<void> {
    const withModules: Record<string, JobTypeDefinition> = {};
    for (const [name, t] of Object.entries(this.opts.jobTypes ?? {})) {
      if (typeof t.handler === 'string') withModules[name] = { ...(t as JobTypeDefinition), name };
    }
    return checkInputs(jobs, withModules, this.opts.dataDirs ?? {});
  }

  async enqueueMany(
    jobs: { type: string; params?: unknown; options?: EnqueueOptions }[],
  ): Promise<EnqueueResult[]> {
    await this.checkInputs(jobs.map((j, i) => ({ type: j.type, params: j.params, where: `jobs[${i}]: ` })));
    const now = this.clock.now();
    const resolved = jobs.map((j) =>
      resolveNewJob(j.type, j.params, j.options ?? {}, this.defaultsFor(j.type), now),
    );
    return storeEnqueueMany(this.store, resolved, now);
  }

  get(id: JobId): Promise<JobDoc | null> {
    return storeGet(this.store, id);
  }

  list(opts: ListOptions = {}): Promise<JobDoc[]> {
    return storeList(this.store, opts);
  }

  /** How many jobs list(opts) would return without limit and skip. */
  count(opts: ListOptions = {}): Promise<number> {
    return countListed(this.store, opts);
  }

  /** Jobs that depend on this one. */
  dependentsOf(id: JobId): Promise<JobDoc[]> {
    return storeDependentsOf(this.store, id);
  }

  countByState(opts: { type?: string } = {}): Promise<Record<JobState, number>> {
    return storeCountByState(this.store, opts);
  }

  events(id: JobId): Promise<JobEventDoc[]> {
    return storeEventsOf(this.store, id);
  }

  /** A job's whole output, from whichever host ran it (src/ops/jobLogs.ts). */
  logs(id: JobId): Promise<JobLog> {
    return readJobLog(this.store, id);
  }

  /** A job's output as it grows, until the job has finished. */
  followLogs(id: JobId, opts: { pollMs?: number; signal?: AbortSignal } = {}): AsyncGenerator<LogPiece> {
    return followJobLog(this.store, id, opts);
  }

  cancel(id: JobId): Promise<JobDoc> {
    return storeCancel(this.store, id, { now: this.clock.now(), by: 'client' });
  }

  retry(id: JobId): Promise<JobDoc> {
    return storeRetry(this.store, id, { now: this.clock.now(), by: 'client' });
  }

  /** Change priority, runAt or tags of a job that is waiting, queued or retrying (not a transition). */
  edit(id: JobId, edit: JobEdit): Promise<JobDoc> {
    return editIfNotRunning(this.store, id, edit, this.clock.now());
  }

  /** Make a queued or retrying job due now. */
  runNow(id: JobId): Promise<JobDoc> {
    return storeRunNow(this.store, id, this.clock.now());
  }

  /** Delete a finished job and its history. */
  remove(id: JobId): Promise<void> {
    return deleteIfFinished(this.store, id);
  }

  /**
   * Add a schedule: `{ cron | everyMs, timezone?, type, params?, priority?, catchUp?, catchUpMax? }`.
   * A bad expression, timezone or interval throws ValidationError naming the field; nothing is written.
   */
  addSchedule(name: string, input: ScheduleInput): Promise<ScheduleDoc> {
    return schedules.addSchedule(this.store, name, input, {
      now: this.clock.now(),
      defaultsFor: (t) => this.defaultsFor(t),
    });
  }

  /** Every schedule, by name, each with its next fire time (nextFireAt). */
  listSchedules(): Promise<ScheduleDoc[]> {
    return schedules.listSchedules(this.store);
  }

  /** One schedule; NotFoundError when there is none of that name. */
  getSchedule(name: string): Promise<ScheduleDoc> {
    return schedules.showSchedule(this.store, name);
  }

  pauseSchedule(name: string): Promise<ScheduleDoc> {
    return schedules.pauseSchedule(this.store, name, this.clock.now());
  }

  /** Fire times that passed while it was paused are not made up: it fires next after now. */
  resumeSchedule(name: string): Promise<ScheduleDoc> {
    return schedules.resumeSchedule(this.store, name, this.clock.now());
  }

  removeSchedule(name: string): Promise<void> {
    return schedules.removeSchedule(this.store, name);
  }

  /** Enqueue the schedule's job now (outside its series); resolves with the job's id. */
  triggerSchedule(name: string): Promise<JobId> {
    return schedules.triggerSchedule(this.store, name, {
      now: this.clock.now(),
      by: 'client',
      defaultsFor: (t) => this.defaultsFor(t),
    });
  }

  /**
   * Submit a whole DAG in one call: `{ name, jobs: [{ key, type, params, dependsOn: [keys] }] }`.
   * Checked as a whole first (a cycle or unknown key is a ValidationError and nothing is written);
   * crash-safe (see docs/state-machine.md); with an `id`, submitting again returns the same workflow.
   */
  submitWorkflow(spec: WorkflowSpec): Promise<SubmitResult> {
    return submitWorkflow(this.store, spec, (t) => this.defaultsFor(t), this.clock.now());
  }

  getWorkflow(id: string): Promise<WorkflowDoc | null> {
    return storeGetWorkflow(this.store, id);
  }

  /** A workflow's jobs (without params and results). */
  workflowJobs(id: string): Promise<JobDoc[]> {
    return storeWorkflowJobs(this.store, id);
  }

  listWorkflows(opts: { state?: WorkflowState; limit?: number } = {}): Promise<WorkflowSummary[]> {
    return storeListWorkflows(this.store, opts);
  }

  /** Cancel every unfinished job of a workflow (running ones are killed by their workers). */
  cancelWorkflow(id: string): Promise<{ workflow: WorkflowDoc; cancelled: JobId[] }> {
    return storeCancelWorkflow(this.store, id, { now: this.clock.now(), by: 'client' });
  }

  /** A job and all its descendants (sub-jobs), each with its parentId. */
  tree(id: JobId): Promise<JobDoc[]> {
    return storeJobTree(this.store, id);
  }

  /**
   * Resolve with the job once it is completed, failed or cancelled. Woken by a change stream where
   * the server offers one; polls (pollMs, default 250) in any case as a safety net.
   */
  async waitFor(id: JobId, opts: { timeoutMs?: number; pollMs?: number } = {}): Promise<JobDoc> {
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const pollMs = opts.pollMs ?? 250;
    const deadline = Date.now() + timeoutMs;
    let wake: (() => void) | null = null;
    let watcher: Watcher | null = null;
    try {
      // On error the stream closes itself and polling carries on alone.
      watcher = watchJob(this.store, id, { onChange: () => wake?.(), onError: () => {} });
    } catch {
      /* no change streams: poll */
    }
    try {
      for (;;) {
        const job = await this.get(id);
        if (!job) throw new JobdError(`job ${id} not found`, 'JOBD_NOT_FOUND');
        if (FINISHED_STATES.includes(job.state)) return job;
        const left = deadline - Date.now();
        if (left <= 0) throw new WaitTimeoutError(id, timeoutMs, job.state);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(pollMs, left));
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
      }
    } finally {
      await watcher?.close();
    }
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
