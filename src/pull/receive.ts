/**
 * Pulling jobs from outside the daemon: a program claims a job of a queue with a lease, renews it,
 * reports progress, and completes or fails it. The claim and the settlements are the daemon's own
 * store functions (claimNext, settleManyIfRunning), fenced by the lease token the same way, so a
 * worker that lost its lease (expired and rescued, cancelled) writes nothing. The HTTP API's worker
 * routes and the library's receive() are this one module.
 */
import { hostname } from 'node:os';
import type { Clock } from '../clock.js';
import { LeaseLostError, NotFoundError, ValidationError } from '../errors.js';
import { loadCatalogEntry } from '../jobs/catalog.js';
import { queueMembership, typesOfQueue } from '../queueAdmin.js';
import { failedAttempt, type RetrySettings } from '../retryPolicy.js';
import {
  AmbiguousClaimError,
  claimNext,
  recoverClaim,
  pausedQueues,
  releaseAfter,
  settleManyIfRunning,
  progressIfRunning,
  watchClaimable,
  whyResultUnstorable,
  type Settlement,
  type Store,
  type Watcher,
} from '../store/index.js';
import {
  EXTERNAL_WORKER_PREFIX,
  leaseStanding,
  noteExternalRunning,
  renewLease,
  touchExternalWorker,
} from '../store/index.js';
import type { JobDoc, JobId, JobTypeDefinition, SerializedError } from '../types.js';

/** What pulling needs from the settings (the daemon's, or a library client's). */
export interface PullSettings {
  store: Store;
  clock: Clock;
  /** Known job types: their queue, retry policy and output schema (types given with their module). */
  jobTypes: Readonly<Record<string, Partial<JobTypeDefinition>>>;
  /** Retry policy and maxAttempts of types these settings do not define. */
  retryDefaults: RetrySettings;
  /** Lease when the caller asks for none. */
  leaseMs: number;
  /** Failed attempts kept in job.errors. */
  errorHistory: number;
  random?: () => number;
}

/** Leases an external worker may ask for. */
export const LEASE_MS_MIN = 1_000;
export const LEASE_MS_MAX = 60 * 60_000;
/** The longest a claim waits for a job (long poll). */
export const WAIT_MS_MAX = 60_000;

export interface ReceiveOptions {
  /** Only these job types of the queue (default: all of them). */
  types?: string[];
  /** This worker's name; its registry id and lease owner is `ext:<name>`. Default: host and pid. */
  worker?: string;
  /** Shown as the worker's version in `jobctl workers`. */
  version?: string;
  /** The lease; renew it with heartbeat() before it runs out. */
  leaseMs?: number;
  /** Wait up to this long for a job when none is due (0: answer at once). */
  waitMs?: number;
  /** Stops the wait (not a claim already made). */
  signal?: AbortSignal;
}

export interface FailOptions {
  /** false: no further attempt, the job fails for good. Default: the type's retry policy decides. */
  retryable?: boolean;
  /** The end of the attempt's log, kept on the job (as the daemon keeps its children's). */
  logTail?: string;
}

/** A result the job type's output schema refuses: nothing was written, the lease is still held. */
export class ResultRefusedError extends ValidationError {
  constructor(
    message: string,
    /** Each field at fault: `result.bytes`, `result` ... */
    readonly problems: { path: string; message: string }[],
  ) {
    super(message);
    this.name = 'ResultRefusedError';
  }
}

function workerId(name: string | undefined): string {
  const n = name ?? `${hostname()}:${process.pid}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$/.test(n)) {
    throw new ValidationError(
      `worker = ${JSON.stringify(n)} is not allowed: must be 1 to 128 letters, digits and _ . : @ / - (starting with a letter or digit)`,
    );
  }
  return `${EXTERNAL_WORKER_PREFIX}${n}`;
}

function boundedMs(name: string, v: number | undefined, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new ValidationError(`${name} = ${v} is not allowed: must be an integer from ${min} to ${max} (ms)`);
  }
  return v;
}

/** Why a write with this lease was refused: the job's state now, and who moved it there. */
function whyLost(id: JobId, job: JobDoc | null): string {
  if (!job) return `job ${id} no longer exists`;
  const head = `job ${id} is no longer held by this lease`;
  if (job.state === 'running') {
    return `${head}: it was claimed again (lease of ${job.lease?.owner ?? 'another worker'})${
      job.lastError?.code === 'JOBD_LEASE_EXPIRED'
        ? ` after this lease expired: ${job.lastError.message}`
        : ''
    }`;
  }
  const why =
    job.state === 'cancelled'
      ? 'it was cancelled'
      : job.lastError?.code === 'JOBD_LEASE_EXPIRED'
        ? `the lease expired and the rescuer moved it (${job.lastError.message})`
        : 'it was settled by another writer';
  return `${head}: it is ${job.state}; ${why}`;
}

export class Pull {
  constructor(private readonly s: PullSettings) {}

  private typeDef(type: string): Partial<JobTypeDefinition> | undefined {
    return this.s.jobTypes[type];
  }

  private retrySettings(type: string): RetrySettings {
    const t = this.typeDef(type);
    return t?.retry && t.maxAttempts !== undefined
      ? { retry: t.retry, maxAttempts: t.maxAttempts }
      : this.s.retryDefaults;
  }

  private queues: Promise<Record<string, string>> | null = null;

  /** type → queue by these settings (read once: loading the modules that declare queues is slow). */
  private membership(): Promise<Record<string, string>> {
    if (!this.queues) {
      const defs: Record<string, JobTypeDefinition> = {};
      for (const [name, d] of Object.entries(this.s.jobTypes))
        defs[name] = { ...d, name } as JobTypeDefinition;
      this.queues = queueMembership(defs);
    }
    return this.queues;
  }

  /** The types to claim: the queue's (by these settings), narrowed to `types`, minus paused queues. */
  async claimTypes(queue: string, types: readonly string[] | undefined): Promise<string[]> {
    const membership = await this.membership();
    const ofQueue = typesOfQueue(queue, membership);
    let chosen = ofQueue;
    if (types !== undefined) {
      const outside = types.filter((t) => !ofQueue.includes(t));
      if (outside.length > 0) {
        throw new ValidationError(
          `types = ${JSON.stringify(outside)} is not allowed: not in queue "${queue}" (its types: ${ofQueue.join(', ')})`,
        );
      }
      chosen = [...new Set(types)];
    }
    const paused = new Set(await pausedQueues(this.s.store));
    return chosen.filter((t) => !paused.has(membership[t] ?? t));
  }

  /**
   * Claim the next due job of `queue` (one findOneAndUpdate, as the daemon's claim), waiting up to
   * waitMs for one. Resolves with its handle, or null when none came in time.
   */
  async receive(queue: string, opts: ReceiveOptions = {}): Promise<ReceivedJob | null> {
    const owner = workerId(opts.worker);
    const leaseMs = boundedMs('leaseMs', opts.leaseMs, this.s.leaseMs, LEASE_MS_MIN, LEASE_MS_MAX);
    const waitMs = boundedMs('waitMs', opts.waitMs, 0, 0, WAIT_MS_MAX);
    const types = await this.claimTypes(queue, opts.types);
    const info = { id: owner, host: hostname(), version: opts.version ?? 'external', types };
    await touchExternalWorker(this.s.store, info, this.s.clock.now());
    const deadline = Date.now() + waitMs;
    let wake: (() => void) | null = null;
    let watcher: Watcher | null = null;
    try {
      for (let round = 0; ; round++) {
        if (opts.signal?.aborted) return null;
        // Paused queues are read again each round: a resumed queue is served within the wait.
        const due = round === 0 ? types : await this.claimTypes(queue, opts.types);
        const now = this.s.clock.now();
        const job = await this.claimOne({ owner, leaseMs, now, types: due });
        if (job) {
          await noteExternalRunning(this.s.store, owner, { add: job._id }, now);
          return new ReceivedJob(this, job, job.lease!.token, owner, leaseMs);
        }
        const left = deadline - Date.now();
        if (left <= 0) return null;
        if (round === 0) {
          try {
            // Woken at once when a job becomes claimable; polling below is the safety net.
            watcher = watchClaimable(this.s.store, { onChange: () => wake?.(), onError: () => {} });
          } catch {
            /* no change streams: poll */
          }
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(left, 500));
          const done = () => {
            clearTimeout(t);
            opts.signal?.removeEventListener('abort', done);
            resolve();
          };
          wake = done;
          opts.signal?.addEventListener('abort', done, { once: true });
        });
        wake = null;
      }
    } finally {
      await watcher?.close();
    }
  }

  /**
   * One claim. A claim whose reply was lost may have landed: the job carrying its token is this
   * worker's (as the daemon's claim loop recovers it), so it is not left to run out its lease.
   */
  private async claimOne(o: {
    owner: string;
    leaseMs: number;
    now: Date;
    types: string[];
  }): Promise<JobDoc | null> {
    try {
      return await claimNext(this.s.store, o);
    } catch (err) {
      if (!(err instanceof AmbiguousClaimError)) throw err;
      const found = await recoverClaim(this.s.store, err.pending).catch(() => {
        throw err;
      });
      return found[0] ?? null;
    }
  }

  /** Extend the lease of the job held under `token`; LeaseLostError when it is gone. */
  async renew(jobId: JobId, token: string, leaseMs: number | undefined): Promise<Date> {
    const ms = boundedMs('leaseMs', leaseMs, this.s.leaseMs, LEASE_MS_MIN, LEASE_MS_MAX);
    const now = this.s.clock.now();
    const r = await renewLease(this.s.store, { jobId, token, leaseMs: ms, now });
    if (!r) throw await this.lost(jobId, token);
    if (r.owner.startsWith(EXTERNAL_WORKER_PREFIX)) {
      await this.s.store.workers.updateOne({ _id: r.owner }, { $set: { heartbeatAt: now } });
    }
    return r.expiresAt;
  }

  /** Record progress of the job held under `token`; LeaseLostError when the lease is gone. */
  async progress(jobId: JobId, token: string, percent: number, message?: string): Promise<void> {
    const ok = await progressIfRunning(this.s.store, {
      jobId,
      token,
      percent,
      ...(message !== undefined ? { message } : {}),
      now: this.s.clock.now(),
    });
    if (!ok) throw await this.lost(jobId, token);
  }

  /** Put a job claimed for nobody back in its queue, the attempt given back (a requeue). */
  async giveBack(jobId: JobId, token: string, message: string): Promise<void> {
    const st = await leaseStanding(this.s.store, { jobId, token });
    if (!st.job || !st.held) return;
    const now = this.s.clock.now();
    const owner = st.job.lease!.owner;
    await settleManyIfRunning(
      this.s.store,
      [{ kind: 'requeue', jobId, token, attempt: st.job.attempts, seq: st.job.seq, message }],
      { owner, now, errorHistory: this.s.errorHistory },
    );
    await noteExternalRunning(this.s.store, owner, { remove: jobId }, now);
  }

  private async lost(jobId: JobId, token: string): Promise<Error> {
    const st = await leaseStanding(this.s.store, { jobId, token });
    if (!st.job) return new NotFoundError(`job ${jobId} not found`);
    return new LeaseLostError(whyLost(jobId, st.job));
  }

  /** The result checked against the type's output schema, when its module declares one. */
  private async checkResult(job: JobDoc, result: unknown): Promise<unknown> {
    const def = this.typeDef(job.type);
    if (typeof def?.handler !== 'string') return result;
    const entry = await loadCatalogEntry({ ...def, name: job.type } as JobTypeDefinition);
    if (!entry.output) return result;
    const parsed = await entry.output.safeParseAsync(result);
    if (parsed.success) return parsed.data;
    const problems = parsed.error.issues.map((i) => ({
      path: `result${i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('')}`,
      message: i.message,
    }));
    throw new ResultRefusedError(
      `job ${job._id}: the result does not match the output schema of job type "${job.type}": ${problems
        .map((p) => `${p.path}: ${p.message}`)
        .join('; ')}`,
      problems,
    );
  }

  /**
   * Complete or fail the job held under `token` (the HTTP API's writes come with the id and token
   * only). A repeat of a settlement that already landed (a retry after a lost reply) returns the job.
   */
  async settle(
    handle: { id: JobId; token: string },
    outcome:
      { kind: 'complete'; result: unknown } | { kind: 'fail'; error: SerializedError; retryable?: boolean },
    logTail: string | undefined,
  ): Promise<JobDoc> {
    const st = await leaseStanding(this.s.store, { jobId: handle.id, token: handle.token });
    if (!st.job) throw new NotFoundError(`job ${handle.id} not found`);
    if (st.settledByIt) {
      const same = outcome.kind === 'complete' ? st.job.state === 'completed' : st.job.state !== 'completed';
      if (same) return st.job;
    }
    if (!st.held) throw new LeaseLostError(whyLost(handle.id, st.job));
    const job = st.job;
    const now = this.s.clock.now();
    const owner = job.lease!.owner;
    const base = {
      jobId: job._id,
      token: handle.token,
      attempt: job.attempts,
      seq: job.seq,
      workflowId: job.workflowId ?? null,
      ...(logTail !== undefined ? { logTail: logTail.slice(-64 * 1024) } : {}),
    };
    let s: Settlement;
    if (outcome.kind === 'complete') {
      const result = await this.checkResult(job, outcome.result);
      const why = whyResultUnstorable(job as unknown as Record<string, unknown>, result, base.logTail);
      if (why) throw new ResultRefusedError(`job ${job._id}: ${why}`, [{ path: 'result', message: why }]);
      s = { ...base, kind: 'complete', result };
    } else {
      const error = outcome.error;
      const decision =
        outcome.retryable === false
          ? ({ retry: false } as const)
          : failedAttempt(job, error, this.retrySettings(job.type), (this.s.random ?? Math.random)());
      s = {
        ...base,
        kind: 'fail',
        error,
        retryAt: decision.retry ? new Date(now.getTime() + decision.delayMs) : null,
        ...(decision.retry ? { delayMs: decision.delayMs } : {}),
        failedAt: now,
      };
    }
    const r = await settleManyIfRunning(this.s.store, [s], {
      owner,
      now,
      errorHistory: this.s.errorHistory,
    });
    if (r.landed.length !== 1) throw await this.lost(job._id, handle.token);
    await noteExternalRunning(this.s.store, owner, { remove: job._id }, now).catch(() => {});
    const finished = s.kind === 'complete' || (s.kind === 'fail' && s.retryAt === null);
    if (finished) {
      // Dependents are told now; if this fails, the releaser sweep tells them (releasePending is set).
      await releaseAfter(this.s.store, [job._id], now, {
        known: [
          {
            id: job._id,
            state: s.kind === 'complete' ? 'completed' : 'failed',
            workflowId: job.workflowId ?? null,
          },
        ],
      }).catch(() => {});
    }
    const after = await leaseStanding(this.s.store, { jobId: job._id, token: handle.token });
    return after.job ?? job;
  }
}

/**
 * Claim the next due job of `queue` through `client` (JobdClient.receive): resolves with its handle, or
 * null when none came within `waitMs`.
 */
export function receive(
  client: { pull: Pull },
  queue: string,
  opts: ReceiveOptions = {},
): Promise<ReceivedJob | null> {
  return client.pull.receive(queue, opts);
}

/** A claimed job and the writes its holder may make, each fenced by its lease token. */
export class ReceivedJob {
  constructor(
    private readonly pull: Pull,
    /** The job as claimed (state running, attempts counted). */
    readonly job: JobDoc,
    /** The lease token: every write names it, and one made after the lease is gone is refused. */
    readonly token: string,
    /** The lease owner (`ext:<worker>`). */
    readonly worker: string,
    private readonly leaseMs: number,
  ) {}

  get id(): JobId {
    return this.job._id;
  }

  /** Extend the lease to now + leaseMs (default: the lease asked for at claim, else the settings'). */
  heartbeat(leaseMs?: number): Promise<Date> {
    return this.pull.renew(this.id, this.token, leaseMs ?? this.leaseMs);
  }

  /** Record progress (0..100) and an optional message. */
  progress(percent: number, message?: string): Promise<void> {
    return this.pull.progress(this.id, this.token, percent, message);
  }

  /** The job completes with `result` (checked against its type's output schema where it has one). */
  complete(result: unknown, opts: { logTail?: string } = {}): Promise<JobDoc> {
    return this.pull.settle(this, { kind: 'complete', result }, opts.logTail);
  }

  /** The attempt failed: retried after its backoff while attempts are left, unless retryable is false. */
  fail(error: unknown, opts: FailOptions = {}): Promise<JobDoc> {
    return this.pull.settle(
      this,
      {
        kind: 'fail',
        error: toSerialized(error),
        ...(opts.retryable !== undefined ? { retryable: opts.retryable } : {}),
      },
      opts.logTail,
    );
  }
}

function toSerialized(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return {
      name: err.name || 'Error',
      message: err.message,
      ...(code !== undefined ? { code: String(code) } : {}),
    };
  }
  if (err && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') {
    const o = err as { name?: unknown; message: string; code?: unknown; details?: unknown };
    return {
      name: typeof o.name === 'string' ? o.name : 'Error',
      message: o.message,
      ...(o.code !== undefined ? { code: String(o.code) } : {}),
      ...(o.details !== undefined ? { details: o.details } : {}),
    };
  }
  return { name: 'Error', message: String(err) };
}
