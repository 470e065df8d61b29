/**
 * The job state machine (docs/state-machine.md is its prose form). Pure: no database here.
 * Each edge names the states it may start from; the store turns that list into the filter of a
 * guarded update, and reports a mismatch as IllegalTransitionError (operator edges) or as
 * "lease lost" (a worker's writes to a running job).
 */
import { IllegalTransitionError } from '../errors.js';
import type { JobId, JobState } from '../types.js';

export interface Edge {
  /** Who triggers it, for messages and the docs. */
  by: string;
  from: readonly JobState[];
  to: readonly JobState[];
}

export const EDGES = {
  enqueue: { by: 'client enqueue', from: [], to: ['queued', 'waiting'] },
  release: { by: 'dependency release', from: ['waiting'], to: ['queued'] },
  depfail: { by: 'dependency failed (policy fail)', from: ['waiting'], to: ['failed'] },
  depskip: { by: 'dependency failed (policy skip)', from: ['waiting'], to: ['cancelled'] },
  rearm: { by: 'operator retry of the dependency', from: ['failed', 'cancelled'], to: ['waiting'] },
  suspend: { by: 'worker, parent waits for its children', from: ['running'], to: ['waiting'] },
  claim: { by: 'worker claim', from: ['queued', 'retrying'], to: ['running'] },
  complete: { by: 'worker, handler returned', from: ['running'], to: ['completed'] },
  fail: { by: 'worker, handler failed', from: ['running'], to: ['retrying', 'failed'] },
  rescue: { by: 'rescuer, lease expired', from: ['running'], to: ['retrying', 'failed'] },
  requeue: {
    by: 'worker shutdown past grace, or its pooled child ended before running it',
    from: ['running'],
    to: ['queued'],
  },
  cancel: { by: 'operator cancel', from: ['waiting', 'queued', 'retrying', 'running'], to: ['cancelled'] },
  retry: { by: 'operator retry', from: ['failed', 'cancelled'], to: ['queued', 'waiting'] },
} as const satisfies Record<string, Edge>;

export type EdgeName = keyof typeof EDGES;

export function allowedFrom(edge: EdgeName): JobState[] {
  return [...EDGES[edge].from];
}

export function isAllowed(edge: EdgeName, from: JobState): boolean {
  return (EDGES[edge].from as readonly JobState[]).includes(from);
}

export function illegalTransition(edge: EdgeName, jobId: JobId, state: JobState): IllegalTransitionError {
  const e = EDGES[edge];
  return new IllegalTransitionError(
    `cannot ${edge} job ${jobId}: it is ${state}; ${edge} (${e.by}) is allowed only from ${e.from.join(', ')}`,
  );
}
