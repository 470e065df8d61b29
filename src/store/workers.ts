import type { JobId, ResourceAllocation, WorkerDoc } from '../types.js';
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
  opts: { now: Date; running: JobId[]; state?: WorkerDoc['state']; resourcesUsed?: ResourceAllocation },
): Promise<void> {
  await store.workers.updateOne(
    { _id: id },
    {
      $set: {
        heartbeatAt: opts.now,
        running: opts.running,
        ...(opts.state ? { state: opts.state } : {}),
        ...(opts.resourcesUsed ? { 'resources.used': opts.resourcesUsed } : {}),
      },
    },
  );
}

/** `advertisesResources`: the worker registered its resources, whose use is zeroed with it. */
export async function markWorkerStopped(
  store: Store,
  id: string,
  now: Date,
  advertisesResources = false,
): Promise<void> {
  const used: ResourceAllocation = { cpus: 0, memoryMb: 0, gpus: [] };
  await store.workers.updateOne(
    { _id: id },
    {
      $set: {
        state: 'stopped',
        running: [],
        heartbeatAt: now,
        ...(advertisesResources ? { 'resources.used': used } : {}),
      },
    },
  );
}

export interface WorkerView extends WorkerDoc {
  /** Not stopped, and no heartbeat for more than two lease periods. */
  dead: boolean;
}

/** A worker that sent no heartbeat for this long is taken for dead. */
function deadAfterMs(leaseMs: number): number {
  return 2 * leaseMs;
}

export async function listWorkers(
  store: Store,
  opts: { now: Date; leaseMs: number; includeStopped?: boolean },
): Promise<WorkerView[]> {
  const docs = await store.workers
    .find(opts.includeStopped === false ? { state: { $ne: 'stopped' } } : {}, { sort: { startedAt: -1 } })
    .toArray();
  const cutoff = opts.now.getTime() - deadAfterMs(opts.leaseMs);
  return docs.map((d) => ({ ...d, dead: d.state !== 'stopped' && d.heartbeatAt.getTime() < cutoff }));
}

export interface UnservedType {
  type: string;
  queued: number;
  retrying: number;
  /** Live daemons know the type but its needs exceed their capacity: each one's reason. */
  unfit?: { worker: string; why: string }[];
}

/**
 * Job types with jobs waiting to be claimed (queued or retrying) that no live worker runs: those
 * jobs wait until a daemon that knows their type starts. Sorted by type.
 */
export async function unservedTypes(
  store: Store,
  opts: { now: Date; leaseMs: number },
): Promise<UnservedType[]> {
  const live = await store.workers
    .find(
      {
        state: { $ne: 'stopped' },
        heartbeatAt: { $gte: new Date(opts.now.getTime() - deadAfterMs(opts.leaseMs)) },
      },
      { projection: { types: 1, unfitTypes: 1 } },
    )
    .toArray();
  const served = new Set(live.flatMap((w) => w.types ?? []));
  const unfit = new Map<string, { worker: string; why: string }[]>();
  for (const w of live) {
    for (const u of w.unfitTypes ?? []) {
      unfit.set(u.type, [...(unfit.get(u.type) ?? []), { worker: w._id, why: u.why }]);
    }
  }
  const rows = await store.jobs
    .aggregate<{ _id: { type: string; state: 'queued' | 'retrying' }; n: number }>([
      { $match: { state: { $in: ['queued', 'retrying'] } } },
      { $group: { _id: { type: '$type', state: '$state' }, n: { $sum: 1 } } },
    ])
    .toArray();
  const byType = new Map<string, UnservedType>();
  for (const r of rows) {
    if (served.has(r._id.type)) continue;
    const why = unfit.get(r._id.type);
    const u = byType.get(r._id.type) ?? {
      type: r._id.type,
      queued: 0,
      retrying: 0,
      ...(why ? { unfit: why } : {}),
    };
    u[r._id.state] += r.n;
    byType.set(r._id.type, u);
  }
  return [...byType.values()].sort((a, b) => (a.type < b.type ? -1 : a.type > b.type ? 1 : 0));
}
