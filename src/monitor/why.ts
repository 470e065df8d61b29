/**
 * `jobctl why ID`: why a job is not running. Each reason names what holds the job and, where known,
 * until when: dependencies, a future runAt, a retry backoff, a paused queue, no live daemon for its
 * type (or none with the resources it needs), full concurrency limits, resources in use, jobs ahead of
 * it, or a lease held by a worker.
 */
import type { ResolvedConfig } from '../config/types.js';
import { NotFoundError } from '../errors.js';
import {
  aheadOf,
  get,
  listWorkers,
  queuePaused,
  runningPerOwner,
  statesOf,
  type Store,
} from '../store/index.js';
import { FINISHED_STATES, type JobDoc, type JobState } from '../types.js';
import { queueOf } from './overview.js';
import { fitsAdvertised, resourcesText } from '../worker/resources.js';

export type WhyCode =
  | 'finished'
  | 'running'
  | 'lease-expired'
  | 'dependencies'
  | 'waiting'
  | 'run-at'
  | 'backoff'
  | 'queue-paused'
  | 'no-daemon'
  | 'no-capacity'
  | 'resources-busy'
  | 'type-concurrency'
  | 'slots-full'
  | 'jobs-ahead'
  | 'due';

export interface WhyReason {
  code: WhyCode;
  message: string;
  until?: Date;
  worker?: string;
  jobs?: { id: string; state: JobState | 'missing' }[];
}

export interface WhyReport {
  id: string;
  type: string;
  state: JobState;
  queue: string;
  reasons: WhyReason[];
}

/** Fields of the workflows feature, read when present (older jobs have none). */
type WithDeps = JobDoc & { dependsOn?: string[]; waitingFor?: string | null };

export async function why(store: Store, config: ResolvedConfig, id: string, now: Date): Promise<WhyReport> {
  const job = (await get(store, id)) as WithDeps | null;
  if (!job) throw new NotFoundError(`job ${id} not found`);
  const queue = queueOf(config, job.type);
  const reasons: WhyReason[] = [];
  const report: WhyReport = { id: job._id, type: job.type, state: job.state, queue, reasons };

  if (FINISHED_STATES.includes(job.state)) {
    reasons.push({
      code: 'finished',
      message: `it finished: ${job.state}${job.finishedAt ? ` at ${job.finishedAt.toISOString()}` : ''}${
        job.lastError && job.state === 'failed'
          ? ` (${job.lastError.code ?? job.lastError.name}: ${job.lastError.message})`
          : ''
      }`,
    });
    return report;
  }
  if (job.state === 'running') {
    const lease = job.lease;
    if (lease && lease.expiresAt.getTime() < now.getTime()) {
      reasons.push({
        code: 'lease-expired',
        message: `its lease held by worker ${lease.owner} expired at ${lease.expiresAt.toISOString()}: that daemon is gone or cut off, and a rescuer will put the job back`,
        worker: lease.owner,
        until: lease.expiresAt,
      });
    } else {
      reasons.push({
        code: 'running',
        message: `it is running: its lease is held by worker ${lease?.owner ?? '(unknown)'} until ${lease?.expiresAt.toISOString() ?? '?'}`,
        ...(lease ? { worker: lease.owner, until: lease.expiresAt } : {}),
      });
    }
    return report;
  }
  if (job.state === 'waiting') {
    const deps = job.dependsOn ?? [];
    if (deps.length > 0) {
      const states = await statesOf(store, deps);
      const open = deps
        .map((d) => ({ id: d, state: states.get(d) ?? ('missing' as const) }))
        .filter((d) => d.state !== 'completed');
      reasons.push({
        code: 'dependencies',
        message: `it waits on ${open.length} of its ${deps.length} dependencies: ${open
          .map((d) => `${d.id} (${d.state})`)
          .join(', ')}`,
        jobs: open,
      });
    } else {
      reasons.push({
        code: 'waiting',
        message: `it is waiting${job.waitingFor ? ` for ${job.waitingFor}` : ''}: it runs once it is released`,
      });
    }
    return report;
  }

  // queued or retrying
  if (job.runAt.getTime() > now.getTime()) {
    if (job.state === 'retrying') {
      const err = job.lastError;
      reasons.push({
        code: 'backoff',
        message: `it is backing off after failed attempt ${job.attempts}${err ? ` (${err.code ?? err.name}: ${err.message})` : ''}: next try at ${job.runAt.toISOString()}`,
        until: job.runAt,
      });
    } else {
      reasons.push({
        code: 'run-at',
        message: `its runAt is in the future: ${job.runAt.toISOString()}`,
        until: job.runAt,
      });
    }
  }
  const paused = await queuePaused(store, queue);
  if (paused?.paused) {
    reasons.push({
      code: 'queue-paused',
      message: `its queue "${queue}" is paused${paused.pausedAt ? ` since ${paused.pausedAt.toISOString()}` : ''}${paused.by ? ` by ${paused.by}` : ''}`,
    });
  }
  const workers = (await listWorkers(store, { now, leaseMs: config.worker.leaseMs })).filter(
    (w) => w.state === 'running' && !w.dead,
  );
  const serving = workers.filter((w) => (w.types ?? []).includes(job.type));
  const unfit = workers.flatMap((w) =>
    (w.unfitTypes ?? []).filter((u) => u.type === job.type).map((u) => `${w._id}: ${u.why}`),
  );
  if (serving.length === 0 && unfit.length > 0) {
    reasons.push({
      code: 'no-capacity',
      message: `no live daemon has the resources job type "${job.type}" needs (${unfit.join('; ')})`,
    });
  } else if (serving.length === 0) {
    reasons.push({
      code: 'no-daemon',
      message:
        workers.length === 0
          ? 'no live daemon is running'
          : `no live daemon runs job type "${job.type}" (queue "${queue}"); live daemons: ${workers.map((w) => w._id).join(', ')}`,
    });
  } else {
    const limit = config.jobTypes[job.type]?.concurrency;
    if (limit !== undefined) {
      const perOwner = await runningPerOwner(store, job.type);
      if (serving.every((w) => (perOwner.get(w._id) ?? 0) >= limit)) {
        reasons.push({
          code: 'type-concurrency',
          message: `every live daemon running "${job.type}" already runs its limit of ${limit} such jobs (concurrency)`,
        });
      }
    }
    const needs = config.jobTypes[job.type]?.needs;
    const busy = (w: (typeof serving)[number]): boolean =>
      !!w.resources && !fitsAdvertised(needs, w.resources);
    if (needs && serving.every(busy)) {
      reasons.push({
        code: 'resources-busy',
        message: `every live daemon running "${job.type}" lacks the free resources it needs (${JSON.stringify(needs)}) as of its last heartbeat (${serving
          .map((w) => `${w._id}: ${resourcesText(w.resources!)}`)
          .join('; ')})`,
      });
    }
    if (serving.every((w) => w.running.length >= w.concurrency)) {
      reasons.push({
        code: 'slots-full',
        message: `every live daemon running "${job.type}" is at its concurrency limit (${serving
          .map((w) => `${w._id}: ${w.running.length}/${w.concurrency}`)
          .join(', ')})`,
      });
    }
  }
  if (job.runAt.getTime() <= now.getTime()) {
    const ahead = await aheadOf(store, job, now);
    if (ahead > 0) {
      reasons.push({
        code: 'jobs-ahead',
        message: `${ahead} due job(s) of type "${job.type}" are ahead of it (priority, then age)`,
      });
    }
  }
  if (reasons.length === 0) {
    reasons.push({
      code: 'due',
      message: 'it is due and a live daemon runs its type: it should be claimed shortly',
    });
  }
  return report;
}
