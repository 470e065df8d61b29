/**
 * The workflows collection: one document per submitted DAG, its jobs carrying workflowId. Submission
 * is crash-safe (see workflowSubmit.ts); a workflow closes when none of its jobs is unfinished.
 */
import type { JobState, WorkflowState } from '../types.js';
import type { Store } from './types.js';

const UNFINISHED: JobState[] = ['waiting', 'queued', 'running', 'retrying'];

/**
 * Close a running workflow whose jobs are all finished: completed when all completed, else failed.
 * Guarded on 'running', so many releasers may try; one wins. Returns the new state, or null.
 */
export async function finishWorkflowIfDone(
  store: Store,
  id: string,
  now: Date,
): Promise<WorkflowState | null> {
  const open = await store.jobs.findOne(
    { workflowId: id, state: { $in: UNFINISHED } },
    { projection: { _id: 1 } },
  );
  if (open) return null;
  const bad = await store.jobs.findOne(
    { workflowId: id, state: { $in: ['failed', 'cancelled'] } },
    { projection: { _id: 1, state: 1 } },
  );
  const state: WorkflowState = bad ? 'failed' : 'completed';
  const res = await store.workflows.updateOne(
    { _id: id, state: 'running' },
    {
      $set: {
        state,
        finishedAt: now,
        updatedAt: now,
        ...(bad ? { reason: `job ${bad._id} ${bad.state}` } : {}),
      },
    },
  );
  return res.modifiedCount === 1 ? state : null;
}

export const UNFINISHED_STATES: readonly JobState[] = UNFINISHED;
