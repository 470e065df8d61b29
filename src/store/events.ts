import { MongoBulkWriteError, type OptionalUnlessRequiredId } from 'mongodb';
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
  // Fresh events carry no _id; the driver adds ObjectIds to these objects on the first try, so a retry
  // of the same array after an ambiguous failure meets the copies that did land as duplicate keys.
  try {
    await store.events.insertMany(events as OptionalUnlessRequiredId<JobEventDoc>[], { ordered: false });
  } catch (err) {
    if (!onlyDuplicateKeys(err)) throw err;
  }
}

/** True when every write error of a bulk insert is a duplicate key: those documents are already stored. */
function onlyDuplicateKeys(err: unknown): boolean {
  if (!(err instanceof MongoBulkWriteError)) return false;
  const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
  return errors.length > 0 && errors.every((e) => e.code === 11000);
}

/** A job's history, oldest first. */
export async function eventsOf(
  store: Store,
  jobId: JobId,
  opts: { limit?: number } = {},
): Promise<JobEventDoc[]> {
  const events = await store.events
    .find({ jobId }, { sort: { at: 1, _id: 1 }, limit: opts.limit ?? 0 })
    .toArray();
  return chainTies(events);
}

/**
 * Events written by different processes in the same millisecond tie on `at`, and their ids do not
 * follow time across processes. The history is a chain (each `from` is the previous `to`), so ties
 * are put in chain order.
 */
function chainTies(events: JobEventDoc[]): JobEventDoc[] {
  const out: JobEventDoc[] = [];
  for (let i = 0; i < events.length;) {
    let j = i + 1;
    while (j < events.length && events[j]!.at.getTime() === events[i]!.at.getTime()) j++;
    const tied = events.slice(i, j);
    while (tied.length > 0) {
      const prev = out.length > 0 ? out[out.length - 1]!.to : null;
      const next = tied.findIndex((e) => e.from === prev);
      out.push(tied.splice(Math.max(0, next), 1)[0]!);
    }
    i = j;
  }
  return out;
}
