import type { Filter, Long } from 'mongodb';
import { JOB_STATES, type JobDoc, type JobId, type JobState } from '../types.js';
import { stripInternal } from './enqueue.js';
import type { Store, StoredJob } from './types.js';

export async function get(store: Store, id: JobId): Promise<JobDoc | null> {
  const doc = await store.jobs.findOne({ _id: id });
  return doc ? stripInternal(doc) : null;
}

/**
 * The jobs of these ids that exist, in one query (by the _id index), in no particular order.
 *
 * Sent as a `find` command whose first batch holds them all (batchSize = the number of ids): the
 * cursor API's per-call machinery (a cursor object, its session, abort and close wiring) cost about
 * as much client CPU as decoding the jobs, on the busiest read of the HTTP API. The collection's
 * read preference and read concern go with it, as a cursor would send them. Should the server leave
 * a cursor open (a batch past 16 MiB), it is closed and the jobs are read through a cursor instead.
 */
export async function getMany(store: Store, ids: readonly JobId[]): Promise<JobDoc[]> {
  if (ids.length === 0) return [];
  const filter = { _id: { $in: [...ids] } };
  const readConcern = store.jobs.readConcern;
  const reply = await store.db.command(
    {
      find: store.jobs.collectionName,
      filter,
      batchSize: ids.length,
      ...(readConcern?.level ? { readConcern: { level: readConcern.level } } : {}),
    },
    { readPreference: store.jobs.readPreference ?? 'primary' },
  );
  const cursor = reply.cursor as { id: number | Long; firstBatch: StoredJob[] };
  if (typeof cursor.id === 'number' ? cursor.id === 0 : cursor.id.isZero())
    return cursor.firstBatch.map(stripInternal);
  await store.db.command({ killCursors: store.jobs.collectionName, cursors: [cursor.id] }).catch(() => {});
  return (await store.jobs.find(filter).toArray()).map(stripInternal);
}

export interface ListOptions {
  state?: JobState | JobState[];
  type?: string | string[];
  tag?: string;
  priority?: number;
  /** Keyset paging: only jobs after this one in the chosen order (a cursor from the previous page). */
  after?: { createdAt: Date; id: JobId };
  datasetUuid?: string;
  /**
   * Newest first (default) or oldest first, by creation time (then id). Ids alone do not order jobs
   * created within the same second by different processes.
   */
  order?: 'newest' | 'oldest';
  limit?: number;
  skip?: number;
}

/**
 * Every state, for a query by type that names no state: with it the `claim` index {state, type, ...}
 * serves the query, one range per (state, type) pair, where by type alone no index starts with type.
 * Every job is in one of these states, so it selects the same jobs.
 */
const ALL_STATES = { $in: [...JOB_STATES] };

function listFilter(opts: ListOptions): Filter<StoredJob> {
  const f: Filter<StoredJob> = {};
  if (opts.state !== undefined) f.state = Array.isArray(opts.state) ? { $in: opts.state } : opts.state;
  else if (opts.type !== undefined) f.state = ALL_STATES;
  if (opts.type !== undefined) f.type = Array.isArray(opts.type) ? { $in: opts.type } : opts.type;
  if (opts.tag !== undefined) f.tags = opts.tag;
  if (opts.priority !== undefined) f.priority = opts.priority;
  if (opts.datasetUuid !== undefined) f.datasetUuid = opts.datasetUuid;
  return f;
}

export async function list(store: Store, opts: ListOptions = {}): Promise<JobDoc[]> {
  const f = listFilter(opts);
  if (opts.after) {
    const op = opts.order === 'oldest' ? '$gt' : '$lt';
    const { createdAt, id } = opts.after;
    f.$or = [{ createdAt: { [op]: createdAt } }, { createdAt, _id: { [op]: id } }];
  }
  const docs = await store.jobs
    .find(f, {
      sort: opts.order === 'oldest' ? { createdAt: 1, _id: 1 } : { createdAt: -1, _id: -1 },
      limit: opts.limit ?? 100,
      skip: opts.skip ?? 0,
    })
    .toArray();
  return docs.map(stripInternal);
}

/** How many jobs list() would return without limit and skip. */
export async function countListed(store: Store, opts: ListOptions = {}): Promise<number> {
  return store.jobs.countDocuments(listFilter(opts));
}

/** Jobs per state (every state present, zero when none). */
export async function countByState(
  store: Store,
  opts: { type?: string } = {},
): Promise<Record<JobState, number>> {
  const match = opts.type !== undefined ? [{ $match: { state: ALL_STATES, type: opts.type } }] : [];
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

/** Jobs that list `id` among their dependencies, oldest first (at most `limit`). */
export async function dependentsOf(store: Store, id: JobId, limit = 10_000): Promise<JobDoc[]> {
  const docs = await store.jobs.find({ dependsOn: id }, { sort: { createdAt: 1, _id: 1 }, limit }).toArray();
  return docs.map(stripInternal);
}

/** Jobs per priority and state, highest priority (1) first. */
export async function countByPriority(
  store: Store,
): Promise<{ priority: number; states: Record<JobState, number>; total: number }[]> {
  const rows = await store.jobs
    .aggregate<{ _id: { p: number; s: JobState }; n: number }>([
      { $group: { _id: { p: '$priority', s: '$state' }, n: { $sum: 1 } } },
    ])
    .toArray();
  const out = new Map<number, { priority: number; states: Record<JobState, number>; total: number }>();
  for (const r of rows) {
    let e = out.get(r._id.p);
    if (!e) {
      e = {
        priority: r._id.p,
        states: Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>,
        total: 0,
      };
      out.set(r._id.p, e);
    }
    e.states[r._id.s] = (e.states[r._id.s] ?? 0) + r.n;
    e.total += r.n;
  }
  return [...out.values()].sort((a, b) => a.priority - b.priority);
}
