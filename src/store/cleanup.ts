/**
 * Deleting finished jobs (jobctl cleanup, retention). Batches of ids walk the cleanup index
 * {state, finishedAt, _id} in that order (the index gives the sort, so a batch reads only its own
 * entries), and memory stays bounded by the batch size. A batch's events, log chunks (and the caller's
 * log files) go before its jobs: a crash in between leaves jobs that the next run deletes, never events
 * without their job. A re-run picks up where a killed one stopped. Each batch is read from past the
 * previous one (its last (finishedAt, _id)), while that one is being deleted.
 *
 * Never deleted: an unfinished job; any job of a workflow that still has unfinished jobs; a finished
 * job that an unfinished job depends on or is the parent of (its state and result are still read).
 */
import { FINISHED_STATES, JOB_STATES, type JobId, type JobState } from '../types.js';
import type { Store } from './types.js';

export interface CleanupSelection {
  /** Per finished state, delete jobs that finished before this time; states absent are kept. */
  before: Partial<Record<JobState, Date>>;
  type?: string;
  batchSize?: number;
  dryRun?: boolean;
  /** Called after each batch with the running totals. */
  onBatch?(totals: CleanupTotals): void;
  /** Called with the ids of each batch before its jobs are deleted (log files go here). */
  beforeDelete?(ids: JobId[]): Promise<void>;
}

export interface CleanupTotals {
  /** Jobs deleted (or, in a dry run, that would be). */
  jobs: number;
  events: number;
  byState: Partial<Record<JobState, number>>;
  /** Finished jobs kept because their workflow, parent or a dependent is unfinished. */
  kept: number;
}

/** What a batch reads of each candidate: the resume point and the workflow, nothing else. */
type Candidate = {
  _id: JobId;
  finishedAt: Date;
  workflowId?: string | null;
};

/** The default batch: few round trips per million jobs, a few hundred KB of ids in memory. */
export const CLEANUP_BATCH = 5000;

/**
 * The unfinished states, listed: equality ranges on the {x, state} indexes, where $nin of the finished
 * ones would make each id's range cover the whole key space between them.
 */
const UNFINISHED: { $in: JobState[] } = { $in: JOB_STATES.filter((s) => !FINISHED_STATES.includes(s)) };

/** Of the candidates, the ids that must stay (see the module comment): the three checks at once. */
async function protectedIds(store: Store, batch: Candidate[]): Promise<Set<JobId>> {
  const keep = new Set<JobId>();
  const workflows = [...new Set(batch.map((c) => c.workflowId).filter((w): w is string => !!w))];
  const ids = batch.map((c) => c._id);
  const [open, deps, parents] = await Promise.all([
    workflows.length > 0
      ? store.jobs.distinct('workflowId', { workflowId: { $in: workflows }, state: UNFINISHED })
      : Promise.resolve([]),
    store.jobs.distinct('dependsOn', { dependsOn: { $in: ids }, state: UNFINISHED } as never),
    store.jobs.distinct('parentId', { parentId: { $in: ids }, state: UNFINISHED } as never),
  ]);
  const openSet = new Set(open as string[]);
  for (const c of batch) if (c.workflowId && openSet.has(c.workflowId)) keep.add(c._id);
  const idSet = new Set(ids);
  for (const d of [...(deps as string[]), ...(parents as string[])]) if (idSet.has(d)) keep.add(d);
  return keep;
}

/** The next batch of candidates of one state, from past `after` (the batch before it) when given. */
function readBatch(
  store: Store,
  sel: CleanupSelection,
  state: JobState,
  before: Date,
  batchSize: number,
  after: Candidate | null,
): Promise<Candidate[]> {
  const filter: Record<string, unknown> = {
    state,
    finishedAt: { $lt: before },
    ...(sel.type !== undefined ? { type: sel.type } : {}),
  };
  if (after) {
    // The top-level bound starts the index range at the resume point; the $or steps past ties.
    filter.finishedAt = { $gte: after.finishedAt, $lt: before };
    filter.$or = [
      { finishedAt: { $gt: after.finishedAt, $lt: before } },
      { finishedAt: after.finishedAt, _id: { $gt: after._id } },
    ];
  }
  return store.jobs
    .find(filter, {
      projection: { _id: 1, finishedAt: 1, workflowId: 1 },
      sort: { finishedAt: 1, _id: 1 },
      limit: batchSize,
      // The whole batch in the first reply: no getMore round trip.
      batchSize,
    })
    .toArray() as Promise<Candidate[]>;
}

export async function deleteFinishedJobs(store: Store, sel: CleanupSelection): Promise<CleanupTotals> {
  const totals: CleanupTotals = { jobs: 0, events: 0, byState: {}, kept: 0 };
  const batchSize = sel.batchSize ?? CLEANUP_BATCH;
  for (const state of FINISHED_STATES) {
    const before = sel.before[state];
    if (!before) continue;
    let next = readBatch(store, sel, state, before, batchSize, null);
    for (;;) {
      const batch = await next;
      if (batch.length === 0) break;
      // The next batch is read from past this one while this one is checked and deleted, so the
      // database and this process work at the same time. Its rejection is seen when it is awaited.
      next = readBatch(store, sel, state, before, batchSize, batch[batch.length - 1]!);
      next.catch(() => undefined);
      const keep = await protectedIds(store, batch);
      const ids = batch.filter((c) => !keep.has(c._id)).map((c) => c._id);
      totals.kept += keep.size;
      if (sel.dryRun) {
        totals.events += ids.length ? await store.events.countDocuments({ jobId: { $in: ids } }) : 0;
        totals.jobs += ids.length;
      } else if (ids.length > 0) {
        // Each by one indexed $in, together: all three are idempotent and only need to precede the jobs.
        const [events] = await Promise.all([
          store.events.deleteMany({ jobId: { $in: ids } }),
          store.logs.deleteMany({ jobId: { $in: ids } }),
          sel.beforeDelete?.(ids),
        ]);
        totals.events += events.deletedCount;
        // Guarded on the state again: an operator's retry in between keeps the job.
        const res = await store.jobs.deleteMany({ _id: { $in: ids }, state, finishedAt: { $lt: before } });
        totals.jobs += res.deletedCount;
      }
      totals.byState[state] = (totals.byState[state] ?? 0) + ids.length;
      sel.onBatch?.(totals);
    }
  }
  return totals;
}
