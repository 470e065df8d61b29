import type { AnyBulkWriteOperation } from 'mongodb';
import type { JobDoc, JobId, SerializedError } from '../types.js';
import { appendEvents, event } from './events.js';
import { newLeaseToken } from './claim.js';
import type { Store, StoredJob } from './types.js';

export interface RescueOptions {
  now: Date;
  /** When the rescued job runs again, or null to fail it (attempts used up); `error` is what it records. */
  retryAt: (job: JobDoc, error: SerializedError) => Date | null;
  /** Failed attempts kept in job.errors. */
  errorHistory: number;
  /** Jobs handled per call. */
  limit?: number;
  /** Who rescues (recorded on the event). */
  rescuer?: string;
}

export interface RescueResult {
  retrying: JobId[];
  failed: JobId[];
}

/**
 * Move running jobs whose lease expired to 'retrying' (or 'failed'). Each update is guarded on the
 * lease the job had when read (state running, same token, still expired), so a late heartbeat, a
 * settling owner, or another daemon's rescuer running at the same time wins or loses cleanly.
 */
export async function rescueExpired(store: Store, opts: RescueOptions): Promise<RescueResult> {
  const expired = await store.jobs
    .find(
      { state: 'running', 'lease.expiresAt': { $lt: opts.now } },
      { sort: { 'lease.expiresAt': 1 }, limit: opts.limit ?? 500 },
    )
    .toArray();
  if (expired.length === 0) return { retrying: [], failed: [] };
  const mark = `rescue:${newLeaseToken()}`;
  const plans = expired.map((job) => {
    const owner = job.lease?.owner ?? 'unknown';
    const error: SerializedError = {
      name: 'LeaseExpiredError',
      code: 'JOBD_LEASE_EXPIRED',
      message: `lease expired; worker ${owner} stopped renewing it`,
    };
    const retryAt = opts.retryAt(job, error);
    const err = { ...error, at: opts.now, attempt: job.attempts, worker: owner };
    const set: Record<string, unknown> = {
      state: retryAt ? 'retrying' : 'failed',
      lease: null,
      settledToken: mark,
      lastError: err,
      updatedAt: opts.now,
    };
    if (retryAt) set.runAt = retryAt;
    else set.finishedAt = opts.now;
    const op: AnyBulkWriteOperation<StoredJob> = {
      updateOne: {
        filter: {
          _id: job._id,
          state: 'running',
          'lease.token': job.lease?.token ?? null,
          'lease.expiresAt': { $lt: opts.now },
        },
        update: {
          $set: set,
          $push: { errors: { $each: [err], $slice: -Math.max(1, opts.errorHistory) } },
          ...(retryAt ? {} : { $unset: { dedupeActive: '' } }),
        },
      },
    };
    return { job, owner, retryAt, op, message: err.message };
  });
  const res = await store.jobs.bulkWrite(
    plans.map((p) => p.op),
    { ordered: false },
  );
  let won = plans;
  if (res.matchedCount !== plans.length) {
    const docs = await store.jobs
      .find({ _id: { $in: plans.map((p) => p.job._id) } }, { projection: { _id: 1, settledToken: 1 } })
      .toArray();
    const ours = new Set(docs.filter((d) => d.settledToken === mark).map((d) => d._id));
    won = plans.filter((p) => ours.has(p.job._id));
  }
  await appendEvents(
    store,
    won.map((p) =>
      event(
        p.job._id,
        'running',
        p.retryAt ? 'retrying' : 'failed',
        opts.now,
        p.job.attempts,
        opts.rescuer ?? null,
        p.message,
      ),
    ),
  );
  return {
    retrying: won.filter((p) => p.retryAt).map((p) => p.job._id),
    failed: won.filter((p) => !p.retryAt).map((p) => p.job._id),
  };
}
