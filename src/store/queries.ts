import type { Filter } from 'mongodb';
import { JOB_STATES, type JobDoc, type JobId, type JobState } from '../types.js';
import { stripInternal } from './enqueue.js';
import type { Store, StoredJob } from './types.js';

export async function get(store: Store, id: JobId): Promise<JobDoc | null> {
  const doc = await store.jobs.findOne({ _id: id });
  return doc ? stripInternal(doc) : null;
}

export interface ListOptions {
  state?: JobState | JobState[];
  type?: string;
  tag?: string;
  datasetUuid?: string;
  /**
   * Newest first (default) or oldest first, by creation time (then id). Ids alone do not order jobs
   * created within the same second by different processes.
   */
  order?: 'newest' | 'oldest';
  limit?: number;
  skip?: number;
}

export async function list(store: Store, opts: ListOptions = {}): Promise<JobDoc[]> {
  const f: Filter<StoredJob> = {};
  if (opts.state !== undefined) f.state = Array.isArray(opts.state) ? { $in: opts.state } : opts.state;
  if (opts.type !== undefined) f.type = opts.type;
  if (opts.tag !== undefined) f.tags = opts.tag;
  if (opts.datasetUuid !== undefined) f.datasetUuid = opts.datasetUuid;
  const docs = await store.jobs
    .find(f, {
      sort: opts.order === 'oldest' ? { createdAt: 1, _id: 1 } : { createdAt: -1, _id: -1 },
      limit: opts.limit ?? 100,
      skip: opts.skip ?? 0,
    })
    .toArray();
  return docs.map(stripInternal);
}

/** Jobs per state (every state present, zero when none). */
export async function countByState(
  store: Store,
  opts: { type?: string } = {},
): Promise<Record<JobState, number>> {
  const match = opts.type !== undefined ? [{ $match: { type: opts.type } }] : [];
  const rows = await store.jobs
    .aggregate<{ _id: JobState; n: number }>([...match, { $group: { _id: '$state', n: { $sum: 1 } } }])
    .toArray();
  const out = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
  for (const r of rows) if (r._id in out) out[r._id] = r.n;
  return out;
}

export interface JobStatsRow {
  type: string;
  state: JobState;
  /** Jobs of this type in this state now. */
  count: number;
  /** Of those, how many finished at or after `since`. */
  finishedSince: number;
  /** Average wall time (ms) of the jobs that finished since `since`; null when none reported one. */
  avgWallMsSince: number | null;
}

/** Counts by type × state, with the jobs that finished since `since` and their average wall time. */
export async function jobStats(store: Store, opts: { since: Date }): Promise<JobStatsRow[]> {
  const rows = await store.jobs
    .aggregate<{
      _id: { type: string; state: JobState };
      count: number;
      recent: number;
      wall: number | null;
    }>([
      {
        $group: {
          _id: { type: '$type', state: '$state' },
          count: { $sum: 1 },
          recent: { $sum: { $cond: [{ $gte: ['$finishedAt', opts.since] }, 1, 0] } },
          wall: { $avg: { $cond: [{ $gte: ['$finishedAt', opts.since] }, '$resources.wallMs', null] } },
        },
      },
    ])
    .toArray();
  return rows.map((r) => ({
    type: r._id.type,
    state: r._id.state,
    count: r.count,
    finishedSince: r.recent,
    avgWallMsSince: r.wall ?? null,
  }));
}
