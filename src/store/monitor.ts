/**
 * Read-only queries behind jobd's monitoring (overview, perf, stale, failed, why, doctor). Everything is
 * computed in the database: counts and percentiles by aggregation, served by jobd's indexes.
 */
import { MongoServerError } from 'mongodb';
import { CLAIMABLE_STATES, FINISHED_STATES, type JobDoc, type JobId, type JobState } from '../types.js';
import { JOB_INDEXES, RETIRED_JOB_INDEXES, sameDefinition, type ExistingIndex } from './indexes.js';
import type { Store } from './types.js';

export interface DepthRow {
  type: string;
  state: JobState;
  count: number;
}

/** Jobs by type and state: a scan of every job (no filter for an index to serve). */
export async function depthByTypeState(store: Store): Promise<DepthRow[]> {
  const rows = await store.jobs
    .aggregate<{
      _id: { type: string; state: JobState };
      n: number;
    }>([{ $group: { _id: { type: '$type', state: '$state' }, n: { $sum: 1 } } }])
    .toArray();
  return rows
    .map((r) => ({ type: r._id.type, state: r._id.state, count: r.n }))
    .sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : a.state < b.state ? -1 : 1));
}

export type RunningJob = Pick<
  JobDoc,
  '_id' | 'type' | 'progress' | 'lease' | 'startedAt' | 'attempts' | 'datasetUuid' | 'createdAt'
>;

const RUNNING_PROJECTION = {
  _id: 1,
  type: 1,
  progress: 1,
  lease: 1,
  startedAt: 1,
  attempts: 1,
  datasetUuid: 1,
  createdAt: 1,
} as const;

/** Running jobs, oldest start first (at most `limit`). */
export async function runningJobs(
  store: Store,
  opts: { limit?: number; type?: string } = {},
): Promise<RunningJob[]> {
  return store.jobs
    .find(
      { state: 'running', ...(opts.type !== undefined ? { type: opts.type } : {}) },
      { projection: RUNNING_PROJECTION, sort: { startedAt: 1, _id: 1 }, limit: opts.limit ?? 50 },
    )
    .toArray() as Promise<RunningJob[]>;
}

/** The claimable job that has been due the longest: its id, type and since when it is due. */
export async function oldestDue(
  store: Store,
  now: Date,
): Promise<{ _id: JobId; type: string; dueSince: Date } | null> {
  const doc = await store.jobs.findOne(
    { state: { $in: [...CLAIMABLE_STATES] }, runAt: { $lte: now } },
    { projection: { _id: 1, type: 1, runAt: 1 }, sort: { runAt: 1 } },
  );
  return doc ? { _id: doc._id, type: doc.type, dueSince: doc.runAt } : null;
}

/** Jobs that finished at or after `since`, by final state (the cleanup index serves each range). */
export async function finishedSince(
  store: Store,
  since: Date,
): Promise<{ completed: number; failed: number; cancelled: number }> {
  const [completed, failed, cancelled] = await Promise.all(
    (['completed', 'failed', 'cancelled'] as const).map((state) =>
      store.jobs.countDocuments({ state, finishedAt: { $gte: since } }),
    ),
  );
  return { completed: completed!, failed: failed!, cancelled: cancelled! };
}

export interface StaleJob extends RunningJob {
  why: 'lease expired' | 'no progress';
}

/**
 * Running jobs whose lease expired (their daemon is gone or cut off), or whose progress (or start,
 * when they never reported any) is older than `progressStaleMs`.
 */
export async function staleJobs(
  store: Store,
  opts: { now: Date; progressStaleMs: number; limit?: number },
): Promise<StaleJob[]> {
  const cutoff = new Date(opts.now.getTime() - opts.progressStaleMs);
  const docs = (await store.jobs
    .find(
      {
        state: 'running',
        $or: [
          { 'lease.expiresAt': { $lt: opts.now } },
          { 'progress.updatedAt': { $lt: cutoff } },
          { progress: null, startedAt: { $lt: cutoff } },
        ],
      },
      { projection: RUNNING_PROJECTION, sort: { startedAt: 1, _id: 1 }, limit: opts.limit ?? 1000 },
    )
    .toArray()) as RunningJob[];
  return docs.map((d) => ({
    ...d,
    why: d.lease && d.lease.expiresAt.getTime() < opts.now.getTime() ? 'lease expired' : 'no progress',
  }));
}

export interface FailureGroup {
  type: string;
  code: string | null;
  count: number;
  lastAt: Date;
  sampleMessage: string | null;
  sampleJobId: JobId;
}

/** Jobs that failed for good since `since`, grouped by type and error code, newest sample first. */
export async function failureGroups(store: Store, opts: { since: Date }): Promise<FailureGroup[]> {
  const rows = await store.jobs
    .aggregate<{
      _id: { type: string; code: string | null };
      count: number;
      lastAt: Date;
      sample: { message: string | null; id: JobId };
    }>([
      { $match: { state: 'failed', finishedAt: { $gte: opts.since } } },
      { $sort: { finishedAt: -1 } },
      {
        $group: {
          _id: { type: '$type', code: { $ifNull: ['$lastError.code', null] } },
          count: { $sum: 1 },
          lastAt: { $max: '$finishedAt' },
          sample: { $first: { message: { $ifNull: ['$lastError.message', null] }, id: '$_id' } },
        },
      },
      { $sort: { count: -1, '_id.type': 1 } },
    ])
    .toArray();
  return rows.map((r) => ({
    type: r._id.type,
    code: r._id.code,
    count: r.count,
    lastAt: r.lastAt,
    sampleMessage: r.sample.message,
    sampleJobId: r.sample.id,
  }));
}

export interface PerfRow {
  type: string;
  count: number;
  completed: number;
  failed: number;
  cancelled: number;
  runP50Ms: number | null;
  runP95Ms: number | null;
  runMaxMs: number | null;
  waitP50Ms: number | null;
  waitP95Ms: number | null;
  attemptsPerJob: number | null;
}

/**
 * Per type, over the jobs that finished at or after `since`: outcomes, run time (started to finished)
 * and wait time (created to started) percentiles, attempts per job. One pipeline; the match is a range
 * of the cleanup index {state, finishedAt} per finished state. $percentile is MongoDB 7.0's
 * (method 'approximate', which MongoDB computes exactly for these input sizes' purposes).
 */
export async function perfByType(store: Store, opts: { since: Date; type?: string }): Promise<PerfRow[]> {
  const rows = await store.jobs
    .aggregate<{
      _id: string;
      count: number;
      completed: number;
      failed: number;
      cancelled: number;
      run: (number | null)[] | null;
      runMax: number | null;
      wait: (number | null)[] | null;
      attempts: number | null;
    }>([
      {
        $match: {
          state: { $in: [...FINISHED_STATES] },
          finishedAt: { $gte: opts.since },
          ...(opts.type !== undefined ? { type: opts.type } : {}),
        },
      },
      {
        $project: {
          type: 1,
          state: 1,
          attempts: 1,
          runMs: {
            $cond: [
              { $eq: [{ $type: '$startedAt' }, 'date'] },
              { $subtract: ['$finishedAt', '$startedAt'] },
              null,
            ],
          },
          waitMs: {
            $cond: [
              { $eq: [{ $type: '$startedAt' }, 'date'] },
              { $subtract: ['$startedAt', '$createdAt'] },
              null,
            ],
          },
        },
      },
      {
        $group: {
          _id: '$type',
          count: { $sum: 1 },
          completed: { $sum: { $cond: [{ $eq: ['$state', 'completed'] }, 1, 0] } },
          failed: { $sum: { $cond: [{ $eq: ['$state', 'failed'] }, 1, 0] } },
          cancelled: { $sum: { $cond: [{ $eq: ['$state', 'cancelled'] }, 1, 0] } },
          run: { $percentile: { input: '$runMs', p: [0.5, 0.95], method: 'approximate' } },
          runMax: { $max: '$runMs' },
          wait: { $percentile: { input: '$waitMs', p: [0.5, 0.95], method: 'approximate' } },
          attempts: { $avg: '$attempts' },
        },
      },
      { $sort: { _id: 1 } },
    ])
    .toArray();
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return rows.map((r) => ({
    type: r._id,
    count: r.count,
    completed: r.completed,
    failed: r.failed,
    cancelled: r.cancelled,
    runP50Ms: num(r.run?.[0]),
    runP95Ms: num(r.run?.[1]),
    runMaxMs: num(r.runMax),
    waitP50Ms: num(r.wait?.[0]),
    waitP95Ms: num(r.wait?.[1]),
    attemptsPerJob: num(r.attempts),
  }));
}

/** The states of the given jobs (absent ids are missing from the map). */
export async function statesOf(store: Store, ids: readonly JobId[]): Promise<Map<JobId, JobState>> {
  if (ids.length === 0) return new Map();
  const docs = await store.jobs.find({ _id: { $in: [...ids] } }, { projection: { state: 1 } }).toArray();
  return new Map(docs.map((d) => [d._id, d.state]));
}

/** Running jobs of `type`, per worker id (lease owner). */
export async function runningPerOwner(store: Store, type: string): Promise<Map<string, number>> {
  const rows = await store.jobs
    .aggregate<{ _id: string | null; n: number }>([
      { $match: { state: 'running', type } },
      { $group: { _id: '$lease.owner', n: { $sum: 1 } } },
    ])
    .toArray();
  return new Map(rows.filter((r) => r._id !== null).map((r) => [r._id!, r.n]));
}

/** How many claimable, due jobs of `type` a claim would take before this one (priority, runAt, _id). */
export async function aheadOf(
  store: Store,
  job: Pick<JobDoc, '_id' | 'type' | 'priority' | 'runAt'>,
  now: Date,
) {
  return store.jobs.countDocuments({
    state: { $in: [...CLAIMABLE_STATES] },
    type: job.type,
    runAt: { $lte: now },
    $or: [
      { priority: { $lt: job.priority } },
      { priority: job.priority, runAt: { $lt: job.runAt } },
      { priority: job.priority, runAt: job.runAt, _id: { $lt: job._id } },
    ],
  });
}

/**
 * Whether a queue is paused, read from the `queues` collection (one document per queue an operator
 * paused or resumed). null when there is no such document: the queue was never paused.
 */
export async function queuePaused(
  store: Store,
  name: string,
): Promise<{ paused: boolean; pausedAt?: Date | null; by?: string } | null> {
  const doc = await store.db
    .collection<{ _id: string; paused?: boolean; pausedAt?: Date | null; by?: string }>('queues')
    .findOne({ _id: name });
  if (!doc) return null;
  return { paused: doc.paused === true, pausedAt: doc.pausedAt ?? null, ...(doc.by ? { by: doc.by } : {}) };
}

/** The database's version and its clock (hello.localTime), with the round trip it took. */
export async function serverInfo(
  store: Store,
): Promise<{ version: string; localTime: Date | null; roundTripMs: number; sentAt: number }> {
  const admin = store.db.admin();
  const build = (await admin.command({ buildInfo: 1 })) as { version?: string };
  const sentAt = Date.now();
  const hello = (await admin.command({ hello: 1 })) as { localTime?: Date };
  const roundTripMs = Date.now() - sentAt;
  return {
    version: build.version ?? 'unknown',
    localTime: hello.localTime instanceof Date ? hello.localTime : null,
    roundTripMs,
    sentAt,
  };
}

/**
 * jobd's indexes on jobs that are absent, those present under jobd's name with another definition, and
 * retired ones still there (a start drops them).
 */
export async function jobIndexProblems(
  store: Store,
): Promise<{ missing: string[]; changed: string[]; retired: string[] }> {
  let have: ExistingIndex[];
  try {
    have = await store.jobs.listIndexes().toArray();
  } catch (err) {
    if (err instanceof MongoServerError && err.code === 26)
      have = []; // NamespaceNotFound
    else throw err;
  }
  const missing: string[] = [];
  const changed: string[] = [];
  for (const want of JOB_INDEXES) {
    const found = have.find((i) => i.name === want.name);
    if (!found) missing.push(want.name!);
    else if (!sameDefinition(found, want)) changed.push(want.name!);
  }
  const retired = RETIRED_JOB_INDEXES.filter((name) => have.some((i) => i.name === name));
  return { missing, changed, retired };
}

/** Opens a change stream on jobs and reads once: true when the server offers change streams. */
export async function changeStreamsSupported(store: Store): Promise<{ ok: boolean; error?: string }> {
  const stream = store.jobs.watch([], { maxAwaitTimeMS: 100 });
  try {
    await stream.tryNext();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    await stream.close().catch(() => {});
  }
}
