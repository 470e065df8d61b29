import { MongoServerError, type IndexDescription } from 'mongodb';
import type { Store } from './types.js';

/** Server codes for "an index of that name (or key) exists with another definition". */
const INDEX_CONFLICT_CODES: ReadonlySet<number> = new Set([
  85, // IndexOptionsConflict
  86, // IndexKeySpecsConflict
]);

/**
 * Dependencies, workflows and sub-jobs (see release.ts):
 * depends_on:      the dependents of a job (multikey), only jobs that have dependencies.
 * release_pending: the releaser sweep's finished jobs whose release may have been missed.
 * workflow_state / parent_state: a workflow's or a parent's unfinished jobs.
 * spawn_key:       a child is stored once per spawn key.
 */
const DEPENDENCY_INDEXES: IndexDescription[] = [
  {
    key: { dependsOn: 1, state: 1 },
    name: 'depends_on',
    partialFilterExpression: { dependsOn: { $exists: true } },
  },
  {
    key: { releasePending: 1, updatedAt: 1 },
    name: 'release_pending',
    partialFilterExpression: { releasePending: { $exists: true } },
  },
  {
    key: { workflowId: 1, state: 1 },
    name: 'workflow_state',
    partialFilterExpression: { workflowId: { $exists: true } },
  },
  {
    key: { parentId: 1, state: 1 },
    name: 'parent_state',
    partialFilterExpression: { parentId: { $exists: true } },
  },
  {
    key: { spawnKey: 1 },
    name: 'spawn_key',
    unique: true,
    partialFilterExpression: { spawnKey: { $exists: true } },
  },
];

/**
 * jobd's indexes on jobs. createIndexes with identical specs is a no-op, so this runs at every start.
 * claim:   serves the claim filter {state ∈ claimable, type ∈ the worker's types, runAt ≤ now} sorted
 *          {priority, runAt, _id}: one range per (state, type), merged in sort order.
 * dedupe:  dedupeKey unique among unfinished jobs (see StoredJob.dedupeActive).
 * rescue:  running jobs by lease expiry. Partial: only jobs holding a lease (running ones) are in it, so
 *          the many finished and queued jobs cost it nothing to insert or delete. The rescue query's
 *          range on lease.expiresAt implies {$exists: true}, MongoDB's rule for using a partial index.
 * cleanup: finished jobs by finishedAt (retention); _id next, so cleanup's batches in (finishedAt, _id)
 *          order come from the index, not from sorting every candidate. The fields after _id never
 *          change the order (_id is unique): they let `perf` (type, run and wait times, attempts) be
 *          a covered query, answered from the index without reading the jobs. Partial: only jobs with
 *          a finishedAt (it is left out, not null, until a job finishes), so a claim does not touch
 *          it and a completion adds one entry instead of moving one. Every query on it bounds
 *          finishedAt by a date, which implies {$exists: true}.
 * dataset: jobs of a dataset. Partial: only jobs with a datasetUuid (it is left out, not null, on
 *          others); every query on it names a uuid, which implies {$exists: true}.
 * created: listing newest or oldest first.
 * Counts by type and state are served by `claim` {state, type}: a query by type alone names every
 * state ($in), one range per (state, type) (see ALL_STATES in queries.ts).
 */
export const JOB_INDEXES: IndexDescription[] = [
  { key: { state: 1, type: 1, priority: 1, runAt: 1, _id: 1 }, name: 'claim' },
  {
    key: { dedupeActive: 1 },
    name: 'dedupe_unfinished',
    unique: true,
    partialFilterExpression: { dedupeActive: { $exists: true } },
  },
  {
    key: { state: 1, 'lease.expiresAt': 1 },
    name: 'rescue',
    partialFilterExpression: { 'lease.expiresAt': { $exists: true } },
  },
  {
    key: { state: 1, finishedAt: 1, _id: 1, type: 1, startedAt: 1, createdAt: 1, attempts: 1 },
    name: 'cleanup',
    partialFilterExpression: { finishedAt: { $exists: true } },
  },
  {
    key: { datasetUuid: 1 },
    name: 'dataset',
    partialFilterExpression: { datasetUuid: { $exists: true } },
  },
  // Jobs whose dataset status is not yet applied: finished jobs already applied fall outside the scan.
  {
    key: { datasetStatusFinal: 1, _id: 1 },
    name: 'dataset_status',
    partialFilterExpression: { datasetUuid: { $type: 'string' } },
  },
  { key: { createdAt: 1, _id: 1 }, name: 'created' },
  // One job per schedule and fire time, for ever, however many daemons fire it.
  {
    key: { fireKey: 1 },
    name: 'fire_key',
    unique: true,
    partialFilterExpression: { fireKey: { $exists: true } },
  },
  ...DEPENDENCY_INDEXES,
];

/**
 * Indexes on jobs that older versions made and jobd no longer wants, dropped by name at start (a later
 * start finds them gone and does nothing). type_state {type, state}: what it served, `claim` serves
 * (see above), and it moved an entry at every claim and every completion.
 */
export const RETIRED_JOB_INDEXES: readonly string[] = ['type_state'];

/** Key order matters; a partial filter is compared as stored (MongoDB returns it as it was given). */
export function sameDefinition(have: ExistingIndex, want: IndexDescription): boolean {
  const canon = (v: unknown) => JSON.stringify(v === undefined ? null : v);
  return (
    canon(Object.entries(have.key ?? {})) === canon(Object.entries(want.key as Record<string, unknown>)) &&
    canon(have.partialFilterExpression) === canon(want.partialFilterExpression) &&
    Boolean(have.unique) === Boolean(want.unique)
  );
}

export interface ExistingIndex {
  name?: string;
  key?: Record<string, unknown>;
  partialFilterExpression?: Record<string, unknown>;
  unique?: boolean;
}

/** Drops an index by name; another daemon starting at the same time may have dropped it first. */
async function dropIfThere(store: Store, name: string): Promise<void> {
  try {
    await store.jobs.dropIndex(name);
  } catch (err) {
    if (!(err instanceof MongoServerError && err.code === 27)) throw err; // IndexNotFound
  }
}

/**
 * An index of jobd's name whose definition changed between versions (the claim index gained `type`,
 * the rescue, dataset and cleanup indexes became partial) is dropped and built again with the new one;
 * a retired one is dropped.
 */
async function replaceChanged(store: Store): Promise<void> {
  let existing: ExistingIndex[];
  try {
    existing = await store.jobs.listIndexes().toArray();
  } catch (err) {
    if (err instanceof MongoServerError && err.code === 26) return; // NamespaceNotFound: nothing yet
    throw err;
  }
  for (const want of JOB_INDEXES) {
    const have = existing.find((i) => i.name === want.name);
    if (have?.key && !sameDefinition(have, want)) await dropIfThere(store, want.name!);
  }
  for (const name of RETIRED_JOB_INDEXES) {
    if (existing.some((i) => i.name === name)) await dropIfThere(store, name);
  }
}

export async function ensureIndexes(store: Store): Promise<void> {
  await replaceChanged(store);
  try {
    await store.jobs.createIndexes(JOB_INDEXES);
  } catch (err) {
    // An older daemon recreated an old definition in between: replace it once more.
    if (!(err instanceof MongoServerError && INDEX_CONFLICT_CODES.has(err.code as number))) throw err;
    await replaceChanged(store);
    await store.jobs.createIndexes(JOB_INDEXES);
  }
  await store.events.createIndexes([{ key: { jobId: 1, at: 1 }, name: 'job_at' }]);
  await store.logs.createIndexes([{ key: { jobId: 1, run: 1, off: 1 }, name: 'job_order' }]);
  await store.workers.createIndexes([{ key: { heartbeatAt: 1 }, name: 'heartbeat' }]);
  await store.schedules.createIndexes([{ key: { paused: 1, nextFireAt: 1 }, name: 'due' }]);
  await store.workflows.createIndexes([
    { key: { state: 1, updatedAt: 1 }, name: 'state_updated' },
    { key: { createdAt: 1, _id: 1 }, name: 'created' },
  ]);
}
