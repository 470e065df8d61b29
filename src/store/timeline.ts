/**
 * Jobs finished over time, in equal buckets: outcomes and run-time percentiles per bucket, for the
 * dashboard's throughput and duration charts. One pipeline over the {state, finishedAt} range the
 * cleanup index serves; empty buckets are filled in here so a chart has every bucket.
 */
import { FINISHED_STATES } from '../types.js';
import type { Store } from './types.js';

export interface TimelineBucket {
  /** The bucket's start. */
  at: Date;
  completed: number;
  failed: number;
  cancelled: number;
  runP50Ms: number | null;
  runP95Ms: number | null;
}

export async function finishedTimeline(
  store: Store,
  opts: { since: Date; until: Date; bucketMs: number; type?: string },
): Promise<TimelineBucket[]> {
  const { since, until, bucketMs } = opts;
  const rows = await store.jobs
    .aggregate<{
      _id: number;
      completed: number;
      failed: number;
      cancelled: number;
      run: (number | null)[] | null;
    }>([
      {
        $match: {
          state: { $in: [...FINISHED_STATES] },
          finishedAt: { $gte: since, $lt: until },
          ...(opts.type !== undefined ? { type: opts.type } : {}),
        },
      },
      {
        $project: {
          state: 1,
          bucket: { $floor: { $divide: [{ $subtract: ['$finishedAt', since] }, bucketMs] } },
          runMs: {
            $cond: [
              { $eq: [{ $type: '$startedAt' }, 'date'] },
              { $subtract: ['$finishedAt', '$startedAt'] },
              null,
            ],
          },
        },
      },
      {
        $group: {
          _id: '$bucket',
          completed: { $sum: { $cond: [{ $eq: ['$state', 'completed'] }, 1, 0] } },
          failed: { $sum: { $cond: [{ $eq: ['$state', 'failed'] }, 1, 0] } },
          cancelled: { $sum: { $cond: [{ $eq: ['$state', 'cancelled'] }, 1, 0] } },
          run: { $percentile: { input: '$runMs', p: [0.5, 0.95], method: 'approximate' } },
        },
      },
    ])
    .toArray();
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  const byBucket = new Map(rows.map((r) => [r._id, r]));
  const count = Math.max(1, Math.ceil((until.getTime() - since.getTime()) / bucketMs));
  const out: TimelineBucket[] = [];
  for (let i = 0; i < count; i++) {
    const r = byBucket.get(i);
    out.push({
      at: new Date(since.getTime() + i * bucketMs),
      completed: r?.completed ?? 0,
      failed: r?.failed ?? 0,
      cancelled: r?.cancelled ?? 0,
      runP50Ms: num(r?.run?.[0]),
      runP95Ms: num(r?.run?.[1]),
    });
  }
  return out;
}
