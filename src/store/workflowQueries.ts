/** Reading workflows and job trees (jobctl workflow show/list, jobctl tree). */
import type { Filter } from 'mongodb';
import type { JobDoc, WorkflowDoc, WorkflowState } from '../types.js';
import { stripInternal } from './enqueue.js';
import type { Store, StoredJob } from './types.js';

const LEAN = { params: 0, result: 0, logTail: 0, errors: 0 } as const;

export async function getWorkflow(store: Store, id: string): Promise<WorkflowDoc | null> {
  return store.workflows.findOne({ _id: id });
}

/** A workflow without its key → job id map, as lists return it. */
export type WorkflowSummary = Omit<WorkflowDoc, 'keys'>;

export async function listWorkflows(
  store: Store,
  opts: { state?: WorkflowState; limit?: number } = {},
): Promise<WorkflowSummary[]> {
  const f: Filter<WorkflowDoc> = opts.state ? { state: opts.state } : {};
  return store.workflows
    .find(f, { sort: { createdAt: -1, _id: -1 }, limit: opts.limit ?? 100, projection: { keys: 0 } })
    .toArray();
}

/** The jobs of a workflow, without params and results (which may be large). */
export async function workflowJobs(store: Store, id: string): Promise<JobDoc[]> {
  const docs = await store.jobs.find({ workflowId: id }, { projection: LEAN }).toArray();
  return docs.map((d: StoredJob) => stripInternal(d));
}

/** A job and all its descendants (children, their children...), each with its parentId. */
export async function jobTree(store: Store, rootId: string, maxJobs = 10_000): Promise<JobDoc[]> {
  const root = await store.jobs.findOne({ _id: rootId }, { projection: LEAN });
  if (!root) return [];
  const out: StoredJob[] = [root];
  let frontier = [root._id];
  while (frontier.length > 0 && out.length < maxJobs) {
    const kids = await store.jobs
      .find(
        { parentId: { $in: frontier } },
        { projection: LEAN, sort: { _id: 1 }, limit: maxJobs - out.length },
      )
      .toArray();
    out.push(...kids);
    frontier = kids.map((k) => k._id);
  }
  return out.map(stripInternal);
}
