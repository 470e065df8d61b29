import type { JobId, WorkerDoc } from '../types.js';
import type { Store } from './types.js';

export type WorkerInfo = Omit<WorkerDoc, 'heartbeatAt' | 'state' | 'running'>;

export async function registerWorker(store: Store, w: WorkerInfo, now: Date): Promise<void> {
  await store.workers.replaceOne(
    { _id: w._id },
    { ...w, heartbeatAt: now, running: [], state: 'running' },
    { upsert: true },
  );
}

export async function heartbeatWorker(
  store: Store,
  id: string,
  opts: { now: Date; running: JobId[]; state?: WorkerDoc['state'] },
): Promise<void> {
  await store.workers.updateOne(
    { _id: id },
    { $set: { heartbeatAt: opts.now, running: opts.running, ...(opts.state ? { state: opts.state } : {}) } },
  );
}

export async function markWorkerStopped(store: Store, id: string, now: Date): Promise<void> {
  await store.workers.updateOne({ _id: id }, { $set: { state: 'stopped', running: [], heartbeatAt: now } });
}

export interface WorkerView extends WorkerDoc {
  /** Not stopped, and no heartbeat for more than two lease periods. */
  dead: boolean;
}

export async function listWorkers(
  store: Store,
  opts: { now: Date; leaseMs: number; includeStopped?: boolean },
): Promise<WorkerView[]> {
  const docs = await store.workers
    .find(opts.includeStopped === false ? { state: { $ne: 'stopped' } } : {}, { sort: { startedAt: -1 } })
    .toArray();
  const cutoff = opts.now.getTime() - 2 * opts.leaseMs;
  return docs.map((d) => ({ ...d, dead: d.state !== 'stopped' && d.heartbeatAt.getTime() < cutoff }));
}
