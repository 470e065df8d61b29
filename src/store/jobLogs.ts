/**
 * A job's output in the database (collection job_logs), so any host reads it: the daemon that runs
 * the job ships its log file in chunks while it runs (src/worker/logShipper.ts). A chunk's id is
 * `<jobId>:<run>:<byte offset in that run's output>`, so a retried insert after an ambiguous
 * failure is stored once. Past the per-job bound one `truncated` marker ends the stored log.
 */
import { MongoServerError } from 'mongodb';
import type { JobId } from '../types.js';
import type { LogChunkDoc, Store } from './types.js';

export type { LogChunkDoc };

/** Where a reader stopped: the last chunk it has. */
export interface LogCursor {
  run: number;
  off: number;
}

/** Sorts after every chunk of every run. */
const MARKER_RUN = 2 ** 31 - 1;

/** Stores a chunk once (a duplicate id is the same chunk, already stored). */
export async function appendLogChunk(store: Store, c: Omit<LogChunkDoc, '_id'>): Promise<void> {
  const doc: LogChunkDoc = {
    _id: c.truncated ? `${c.jobId}:truncated` : `${c.jobId}:${c.run}:${c.off}`,
    ...c,
    ...(c.truncated ? { run: MARKER_RUN, off: 0 } : {}),
  };
  try {
    await store.logs.insertOne(doc);
  } catch (err) {
    if (!(err instanceof MongoServerError && err.code === 11000)) throw err;
  }
}

/** Bytes of output stored for a job so far, and whether its log was cut. */
export async function storedLogBytes(
  store: Store,
  jobId: JobId,
): Promise<{ bytes: number; truncated: boolean }> {
  const [r] = await store.logs
    .aggregate<{ bytes: number; truncated: number }>([
      { $match: { jobId } },
      {
        $group: {
          _id: null,
          bytes: { $sum: '$bytes' },
          truncated: { $max: { $cond: [{ $eq: ['$truncated', true] }, 1, 0] } },
        },
      },
    ])
    .toArray();
  return { bytes: r?.bytes ?? 0, truncated: (r?.truncated ?? 0) === 1 };
}

/** A job's chunks after `after` (all without it), in order. */
export async function logChunksAfter(
  store: Store,
  jobId: JobId,
  after: LogCursor | null,
  limit = 500,
): Promise<LogChunkDoc[]> {
  const filter = after
    ? {
        jobId,
        $or: [{ run: { $gt: after.run } }, { run: after.run, off: { $gt: after.off } }],
      }
    : { jobId };
  return store.logs.find(filter, { sort: { run: 1, off: 1 }, limit }).toArray();
}

/** Deletes the chunks of these jobs (cleanup, deleting a job). */
export async function deleteLogsOf(store: Store, ids: JobId[]): Promise<number> {
  if (ids.length === 0) return 0;
  return (await store.logs.deleteMany({ jobId: { $in: ids } })).deletedCount;
}
