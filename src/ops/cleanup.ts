/**
 * Cleanup of finished jobs with their events and log files: `jobctl cleanup` and the daemons'
 * retention both call this.
 */
import { stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { deleteFinishedJobs, type CleanupTotals, type Store } from '../store/index.js';
import type { JobId, JobState } from '../types.js';

export interface CleanupOptions {
  /** Age per finished state (ms); states absent are kept. */
  olderThanMs: Partial<Record<JobState, number>>;
  type?: string;
  dryRun?: boolean;
  batchSize?: number;
  /** Folder of the per-job log files (<logDir>/<jobId>.log). */
  logDir: string;
  now: Date;
  onBatch?(totals: CleanupTotals): void;
}

const PARALLEL_UNLINKS = 32;

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** One unlink per log file (a job that never ran has none: ENOENT is fine). */
async function removeLogs(logDir: string, ids: JobId[]): Promise<void> {
  for (let i = 0; i < ids.length; i += PARALLEL_UNLINKS) {
    await Promise.all(
      ids.slice(i, i + PARALLEL_UNLINKS).map((id) =>
        unlink(join(logDir, `${id}.log`)).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw err;
        }),
      ),
    );
  }
}

export async function cleanupJobs(store: Store, o: CleanupOptions): Promise<CleanupTotals> {
  const before: Partial<Record<JobState, Date>> = {};
  for (const [state, ms] of Object.entries(o.olderThanMs) as [JobState, number][]) {
    before[state] = new Date(o.now.getTime() - ms);
  }
  return deleteFinishedJobs(store, {
    before,
    ...(o.type !== undefined ? { type: o.type } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.dryRun ? { dryRun: true } : {}),
    ...(o.onBatch ? { onBatch: o.onBatch } : {}),
    // No log folder, no log files: a million finished jobs need no million unlinks.
    ...((await isDir(o.logDir)) ? { beforeDelete: (ids: JobId[]) => removeLogs(o.logDir, ids) } : {}),
  });
}
