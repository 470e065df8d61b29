/**
 * A job's direct children with what they returned, for views that show their results (a microscope
 * session's exposures). jobTree leaves results out to stay light; this reads only the fields such a
 * view needs, served by the parentId index.
 */
import type { JobDoc, JobId } from '../types.js';
import type { Store } from './types.js';

export type ChildResult = Pick<
  JobDoc,
  '_id' | 'type' | 'state' | 'result' | 'lastError' | 'parentId' | 'spawnKey' | 'createdAt' | 'finishedAt'
>;

export async function childrenWithResults(
  store: Store,
  parentId: JobId,
  limit = 100_000,
): Promise<ChildResult[]> {
  return store.jobs
    .find(
      { parentId },
      {
        projection: {
          type: 1,
          state: 1,
          result: 1,
          lastError: 1,
          parentId: 1,
          spawnKey: 1,
          createdAt: 1,
          finishedAt: 1,
        },
        sort: { _id: 1 },
        limit,
      },
    )
    .toArray() as Promise<ChildResult[]>;
}
