/** Job documents written straight into a test database, in any state, for the monitoring and cleanup tests. */
import { ObjectId, type Db } from 'mongodb';

export function jobDoc(over: Record<string, unknown> = {}): Record<string, unknown> {
  const now = new Date();
  return {
    _id: new ObjectId().toHexString(),
    type: 'echo',
    params: {},
    state: 'queued',
    priority: 5,
    runAt: now,
    attempts: 0,
    maxAttempts: 3,
    timeoutMs: 60_000,
    lease: null,
    progress: null,
    lastError: null,
    errors: [],
    resources: null,
    logTail: null,
    createdAt: now,
    updatedAt: now,
    startedAt: null,
    finishedAt: null,
    datasetUuid: null,
    dedupeKey: null,
    tags: [],
    seq: 1,
    ...over,
  };
}

export async function insertJobs(db: Db, docs: Record<string, unknown>[]): Promise<string[]> {
  await db.collection('jobs').insertMany(docs as never[]);
  return docs.map((d) => d._id as string);
}
