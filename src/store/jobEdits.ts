/**
 * Operator edits that are not transitions (docs/state-machine.md, "Operator edits"): change a job's
 * priority, runAt or tags while it does not run, run it now, delete it once finished. Each is one
 * update guarded on the states it may start from; none changes `state` or `seq`.
 */
import { IllegalTransitionError, NotFoundError } from '../errors.js';
import { FINISHED_STATES, type JobDoc, type JobId, type JobState } from '../types.js';
import { stripInternal } from './enqueue.js';
import type { Store } from './types.js';

/** States whose priority, runAt and tags may change: the job is not running and not finished. */
export const EDITABLE_STATES: readonly JobState[] = ['waiting', 'queued', 'retrying'];
/** States a job may be started early from: claimable ones. */
export const RUNNABLE_STATES: readonly JobState[] = ['queued', 'retrying'];

export interface JobEdit {
  priority?: number;
  runAt?: Date;
  tags?: string[];
}

async function explain(store: Store, id: JobId, what: string, allowed: readonly JobState[]): Promise<never> {
  const doc = await store.jobs.findOne({ _id: id }, { projection: { state: 1 } });
  if (!doc) throw new NotFoundError(`job ${id} not found`);
  throw new IllegalTransitionError(
    `cannot ${what} job ${id}: it is ${doc.state}; allowed only while ${allowed.join(', ')}`,
  );
}

/** Change priority, runAt and/or tags of a job that is waiting, queued or retrying. */
export async function editIfNotRunning(store: Store, id: JobId, edit: JobEdit, now: Date): Promise<JobDoc> {
  const set: Record<string, unknown> = { updatedAt: now };
  if (edit.priority !== undefined) set.priority = edit.priority;
  if (edit.runAt !== undefined) set.runAt = edit.runAt;
  if (edit.tags !== undefined) set.tags = edit.tags;
  const after = await store.jobs.findOneAndUpdate(
    { _id: id, state: { $in: [...EDITABLE_STATES] } },
    { $set: set },
    { returnDocument: 'after' },
  );
  return after ? stripInternal(after) : explain(store, id, 'edit', EDITABLE_STATES);
}

/** Make a queued or retrying job due now, so the next claim may take it. */
export async function runNow(store: Store, id: JobId, now: Date): Promise<JobDoc> {
  const after = await store.jobs.findOneAndUpdate(
    { _id: id, state: { $in: [...RUNNABLE_STATES] } },
    { $set: { runAt: now, updatedAt: now } },
    { returnDocument: 'after' },
  );
  return after ? stripInternal(after) : explain(store, id, 'start', RUNNABLE_STATES);
}

/** Delete a finished job and its history. Its release must have happened (releasePending unset). */
export async function deleteIfFinished(store: Store, id: JobId): Promise<void> {
  // A finished job whose dependents are not yet told stays until the releaser has told them.
  const res = await store.jobs.deleteOne({
    _id: id,
    state: { $in: [...FINISHED_STATES] },
    releasePending: { $ne: true },
  });
  if (res.deletedCount === 0) {
    const doc = await store.jobs.findOne({ _id: id }, { projection: { state: 1, releasePending: 1 } });
    if (!doc) throw new NotFoundError(`job ${id} not found`);
    if (FINISHED_STATES.includes(doc.state))
      throw new IllegalTransitionError(
        `cannot delete job ${id} yet: its dependents are being told it finished`,
      );
    return explain(store, id, 'delete', FINISHED_STATES);
  }
  await store.events.deleteMany({ jobId: id });
  await store.logs.deleteMany({ jobId: id });
}
