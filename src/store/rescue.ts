import type { AnyBulkWriteOperation } from 'mongodb';
import type { JobDoc, JobEventDoc, JobId, SerializedError } from '../types.js';
import { appendEvents, event, missingEvents, nextSeq, orderHistory, RECOVERED_BY_RESCUER } from './events.js';
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
    else {
      set.finishedAt = opts.now;
      // Its dependents are told by the releaser sweep (see releaseAfter).
      set.releasePending = true;
    }
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
          $inc: { seq: 1 },
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
  await appendEvents(store, [
    ...(await recoverHistory(
      store,
      won.map((p) => p.job),
      opts.now,
    )),
    ...won.map((p) =>
      event(
        p.job._id,
        'running',
        p.retryAt ? 'retrying' : 'failed',
        opts.now,
        p.job.attempts,
        opts.rescuer ?? null,
        p.message,
        p.job.seq === undefined ? undefined : nextSeq(p.job),
      ),
    ),
  ]);
  return {
    retrying: won.filter((p) => p.retryAt).map((p) => p.job._id),
    failed: won.filter((p) => !p.retryAt).map((p) => p.job._id),
  };
}

/**
 * A rescued job's worker died or lost its lease, maybe between a transition and its event (the claim,
 * most often): the transitions missing from the job's history are written now, marked recovered.
 */
async function recoverHistory(store: Store, jobs: StoredJob[], now: Date): Promise<JobEventDoc[]> {
  const numbered = jobs.filter((j) => j.seq !== undefined);
  if (numbered.length === 0) return [];
  const byJob = new Map<JobId, JobEventDoc[]>();
  const events = await store.events
    .find({ jobId: { $in: numbered.map((j) => j._id) } }, { sort: { at: 1, _id: 1 } })
    .toArray();
  for (const e of events) {
    const list = byJob.get(e.jobId);
    if (list) list.push(e);
    else byJob.set(e.jobId, [e]);
  }
  return numbered.flatMap((j) =>
    missingEvents(j, orderHistory(byJob.get(j._id) ?? []), {
      message: RECOVERED_BY_RESCUER,
      now,
      graceMs: 0,
    }),
  );
}
