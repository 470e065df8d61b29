import type { OptionalUnlessRequiredId } from 'mongodb';
import type { JobEventDoc, JobId, JobState } from '../types.js';
import type { Store } from './types.js';

export function event(
  jobId: JobId,
  from: JobState | null,
  to: JobState,
  at: Date,
  attempt: number,
  worker?: string | null,
  message?: string | null,
): JobEventDoc {
  return { jobId, from, to, at, attempt, worker: worker ?? null, message: message ?? null };
}

/**
 * Append transition events in one unordered insertMany. The job document is the truth; events are
 * its history, written right after the transition. If the history write fails the transition stands.
 */
export async function appendEvents(store: Store, events: JobEventDoc[]): Promise<void> {
  if (events.length === 0) return;
  // Fresh events carry no _id; the driver adds ObjectIds.
  await store.events.insertMany(events as OptionalUnlessRequiredId<JobEventDoc>[], { ordered: false });
}

/** A job's history, oldest first. */
export async function eventsOf(store: Store, jobId: JobId, opts: { limit?: number } = {}): Promise<JobEventDoc[]> {
  return store.events
    .find({ jobId }, { sort: { at: 1, _id: 1 }, limit: opts.limit ?? 0 })
    .toArray();
}
