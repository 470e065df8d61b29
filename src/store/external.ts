/**
 * What workers outside the daemon need beyond the daemon's own store functions: a registry entry
 * (so `jobctl workers` and unservedTypes see them), a lease renewal that says whose lease it was,
 * and a read of where a job stands for a write that lost its lease. Claims and settlements are the
 * daemon's own (claimNext, settleManyIfRunning), so fencing is the same.
 */
import type { JobDoc, JobId } from '../types.js';
import { stripInternal } from './enqueue.js';
import { leaseGuard, type HeldLease } from './running.js';
import type { Store } from './types.js';

/** External workers' registry ids carry this prefix, so no client can take over a daemon's entry. */
export const EXTERNAL_WORKER_PREFIX = 'ext:';

export interface ExternalWorkerInfo {
  /** Registry id (with the prefix); becomes lease.owner of what it claims. */
  id: string;
  host: string;
  version: string;
  types: string[];
}

/** Insert or refresh an external worker's registry entry: it is alive now and takes these types. */
export async function touchExternalWorker(store: Store, w: ExternalWorkerInfo, now: Date): Promise<void> {
  await store.workers.updateOne(
    { _id: w.id },
    {
      $set: { host: w.host, version: w.version, types: w.types, heartbeatAt: now, state: 'running' },
      $setOnInsert: { pid: 0, startedAt: now, concurrency: 1, running: [], external: true },
    },
    { upsert: true },
  );
}

/** Keep an external worker's `running` list in step with what it holds (one job per claim). */
export async function noteExternalRunning(
  store: Store,
  workerId: string,
  change: { add?: JobId; remove?: JobId },
  now: Date,
): Promise<void> {
  if (!workerId.startsWith(EXTERNAL_WORKER_PREFIX)) return;
  const update =
    change.add !== undefined
      ? { $addToSet: { running: change.add }, $set: { heartbeatAt: now } }
      : { $pull: { running: change.remove! }, $set: { heartbeatAt: now } };
  await store.workers.updateOne({ _id: workerId }, update);
}

/**
 * Extend one lease to now + leaseMs, guarded like every write to a running job. Returns the lease's
 * owner, or null when the lease is gone (the job was rescued, cancelled or settled).
 */
export async function renewLease(
  store: Store,
  l: HeldLease & { leaseMs: number; now: Date },
): Promise<{ owner: string; expiresAt: Date } | null> {
  const expiresAt = new Date(l.now.getTime() + l.leaseMs);
  const doc = await store.jobs.findOneAndUpdate(
    leaseGuard(l),
    { $set: { 'lease.expiresAt': expiresAt } },
    { projection: { 'lease.owner': 1 }, returnDocument: 'after' },
  );
  return doc?.lease ? { owner: doc.lease.owner, expiresAt } : null;
}

export interface LeaseStanding {
  /** null: no such job. */
  job: JobDoc | null;
  /** The job is running under exactly this lease. */
  held: boolean;
  /** This lease's own settlement already landed (a repeated complete or fail). */
  settledByIt: boolean;
}

/** Where a job stands for the holder of `token`. */
export async function leaseStanding(store: Store, l: HeldLease): Promise<LeaseStanding> {
  const doc = await store.jobs.findOne({ _id: l.jobId });
  if (!doc) return { job: null, held: false, settledByIt: false };
  return {
    job: stripInternal(doc),
    held: doc.state === 'running' && doc.lease?.token === l.token,
    settledByIt: doc.state !== 'running' && doc.settledToken === l.token,
  };
}
