/**
 * Queues: the `queues` collection holds one document per queue an operator paused or resumed
 * ({ _id: name, paused, updatedAt }); a queue with no document is running. Which job types belong to
 * which queue is settings (a type's `queue`, else its name), so the queries here take job types.
 */
import type { Collection, Document, Filter } from 'mongodb';
import type { JobState } from '../types.js';
import type { Store, StoredJob } from './types.js';
import { watchCollection, type Watcher, type WatchHandlers } from './watch.js';

export interface QueueDoc {
  _id: string;
  paused: boolean;
  updatedAt: Date;
  /** When it was paused (null while running). */
  pausedAt?: Date | null;
  /** Who paused or resumed it (jobctl, a library client). */
  by?: string;
}

export const QUEUES_COLLECTION = 'queues';

function queues(store: Store): Collection<QueueDoc> {
  return store.db.collection<QueueDoc>(QUEUES_COLLECTION);
}

/** Pause or resume a queue (idempotent); returns the stored document. */
export async function setQueuePaused(
  store: Store,
  name: string,
  paused: boolean,
  opts: { now: Date; by?: string },
): Promise<QueueDoc> {
  const doc = await queues(store).findOneAndUpdate(
    { _id: name },
    {
      $set: {
        paused,
        updatedAt: opts.now,
        ...(opts.by !== undefined ? { by: opts.by } : {}),
        ...(paused ? {} : { pausedAt: null }),
      },
      // Pausing a paused queue keeps the time it was first paused.
      ...(paused ? { $setOnInsert: { pausedAt: opts.now } } : {}),
    },
    { upsert: true, returnDocument: 'after' },
  );
  if (paused && doc && !doc.pausedAt) {
    await queues(store).updateOne({ _id: name, pausedAt: null }, { $set: { pausedAt: opts.now } });
    return { ...doc, pausedAt: opts.now };
  }
  return doc!;
}

/** Every stored queue document (paused or resumed at some point). */
export async function listQueueDocs(store: Store): Promise<QueueDoc[]> {
  return queues(store).find({}).sort({ _id: 1 }).toArray();
}

/** Names of the paused queues. */
export async function pausedQueues(store: Store): Promise<string[]> {
  const docs = await queues(store)
    .find({ paused: true }, { projection: { _id: 1 } })
    .toArray();
  return docs.map((d) => d._id);
}

/** Any change to the queues collection (the caller re-reads the paused set). */
export function watchQueues(store: Store, h: WatchHandlers<null>): Watcher {
  return watchCollection(store, queues(store) as unknown as Collection<Document>, [], () => null, h);
}

export interface TypeStateCount {
  type: string;
  state: JobState;
  n: number;
}

/** Jobs per (type, state), and the creation time of each type's oldest queued job. */
export async function countByTypeAndState(
  store: Store,
): Promise<{ counts: TypeStateCount[]; oldestQueued: Record<string, Date> }> {
  const counts = await store.jobs
    .aggregate<{ _id: { type: string; state: JobState }; n: number }>([
      { $group: { _id: { type: '$type', state: '$state' }, n: { $sum: 1 } } },
    ])
    .toArray();
  const oldest = await store.jobs
    .aggregate<{ _id: string; at: Date }>([
      { $match: { state: 'queued' } },
      { $group: { _id: '$type', at: { $min: '$createdAt' } } },
    ])
    .toArray();
  return {
    counts: counts.map((c) => ({ type: c._id.type, state: c._id.state, n: c.n })),
    oldestQueued: Object.fromEntries(oldest.map((o) => [o._id, o.at])),
  };
}

export interface CleanOptions {
  types: readonly string[];
  state: 'completed' | 'failed' | 'cancelled';
  /** Only jobs that finished before this. */
  before?: Date;
  /** Jobs deleted per batch. */
  chunk?: number;
  /** Each batch's deleted job ids, after they are gone (their log files can go too). */
  onDeleted?: (ids: string[]) => Promise<void> | void;
}

function cleanFilter(opts: CleanOptions): Filter<StoredJob> {
  return {
    state: opts.state,
    type: { $in: [...opts.types] },
    ...(opts.before ? { finishedAt: { $lt: opts.before } } : {}),
  };
}

/** How many jobs cleanQueue would delete now. */
export async function countCleanable(store: Store, opts: CleanOptions): Promise<number> {
  if (opts.types.length === 0) return 0;
  return store.jobs.countDocuments(cleanFilter(opts));
}

/**
 * Delete the finished jobs of some types in a state, in batches, with their history events.
 * A batch deletes by id and filter again, so a job retried meanwhile (no longer finished) stays.
 */
export async function cleanQueue(
  store: Store,
  opts: CleanOptions,
): Promise<{ jobs: number; events: number }> {
  if (opts.types.length === 0) return { jobs: 0, events: 0 };
  const filter = cleanFilter(opts);
  let jobs = 0;
  let events = 0;
  for (;;) {
    const ids = (
      await store.jobs.find(filter, { projection: { _id: 1 }, limit: opts.chunk ?? 1000 }).toArray()
    ).map((d: Document) => d._id as string);
    if (ids.length === 0) return { jobs, events };
    const res = await store.jobs.deleteMany({ ...filter, _id: { $in: ids } });
    const ev = await store.events.deleteMany({ jobId: { $in: ids } });
    await store.logs.deleteMany({ jobId: { $in: ids } });
    jobs += res.deletedCount;
    events += ev.deletedCount;
    await opts.onDeleted?.(ids);
  }
}
