import type { Store } from './types.js';

/**
 * jobd's indexes. createIndexes with identical specs is a no-op, so this runs at every start.
 * claim:   serves the claim filter {state ∈ claimable, runAt ≤ now} sorted {priority, runAt, _id}.
 * dedupe:  dedupeKey unique among unfinished jobs (see StoredJob.dedupeActive).
 * rescue:  running jobs by lease expiry.
 * cleanup: finished jobs by finishedAt (retention).
 * created: listing newest or oldest first.
 */
export async function ensureIndexes(store: Store): Promise<void> {
  await store.jobs.createIndexes([
    { key: { state: 1, priority: 1, runAt: 1, _id: 1 }, name: 'claim' },
    {
      key: { dedupeActive: 1 },
      name: 'dedupe_unfinished',
      unique: true,
      partialFilterExpression: { dedupeActive: { $exists: true } },
    },
    { key: { state: 1, 'lease.expiresAt': 1 }, name: 'rescue' },
    { key: { state: 1, finishedAt: 1 }, name: 'cleanup' },
    { key: { datasetUuid: 1 }, name: 'dataset' },
    { key: { type: 1, state: 1 }, name: 'type_state' },
    { key: { createdAt: 1, _id: 1 }, name: 'created' },
  ]);
  await store.events.createIndexes([{ key: { jobId: 1, at: 1 }, name: 'job_at' }]);
  await store.workers.createIndexes([{ key: { heartbeatAt: 1 }, name: 'heartbeat' }]);
}
