import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cancel, claimNext, enqueue, eventsOf, get, rescueExpired } from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, TEST_TYPES, type StoreFixture } from './store-helpers.js';

describe('daemon: leases and shutdown', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('daemon_lease');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });
  const now = () => new Date();

  it('graceful stop: jobs finishing within the grace complete; the rest go back to queued with attempts unchanged', async () => {
    d = await startTestDaemon(f, { worker: { concurrency: 4 } });
    const claimed = new Set<string>();
    const allClaimed = new Promise<void>((resolve) =>
      d!.on('job:claimed', (e) => {
        claimed.add(e.jobId);
        if (claimed.size === 3) resolve();
      }),
    );
    const quick = await enqueue(f.store, newJob('sleep', { ms: 50 }, {}, now()), now());
    const long1 = await enqueue(f.store, newJob('sleep', { ms: 600_000 }, {}, now()), now());
    const long2 = await enqueue(f.store, newJob('sleep', { ms: 600_000 }, {}, now()), now());
    await allClaimed;
    const requeued: string[] = [];
    d.on('job:requeued', (e) => requeued.push(e.jobId));
    const stopped = d.events.waitFor('daemon:stopped');
    await d.stop({ graceMs: 1_500 });
    expect((await stopped).requeued).toBe(2);
    d = null;
    expect(requeued.sort()).toEqual([long1.job._id, long2.job._id].sort());
    expect((await get(f.store, quick.job._id))?.state).toBe('completed');
    for (const j of [long1, long2]) {
      const doc = await get(f.store, j.job._id);
      expect(doc).toMatchObject({ state: 'queued', attempts: 0, lease: null });
      expect(doc?.errors).toEqual([]);
      expect((await eventsOf(f.store, j.job._id)).map((e) => e.to)).toEqual(['queued', 'running', 'queued']);
    }
    const w = await f.store.workers.find({}).toArray();
    expect(w[0]?.state).toBe('stopped');
  });

  it('a worker that lost its lease stops the child and cannot overwrite the job (rescued and re-claimed)', async () => {
    d = await startTestDaemon(f, { worker: { leaseMs: 60_000, heartbeatMs: 100 } });
    const claimed = d.events.waitFor('job:claimed');
    const { job } = await enqueue(f.store, newJob('sleep', { ms: 600_000 }, {}, now()), now());
    const c = await claimed;
    expect(c.jobId).toBe(job._id);
    const lost = d.events.waitFor('job:lost', (e) => e.jobId === job._id);
    // Pretend the lease expired long ago; a rescuer and another worker take the job over.
    // The daemon's heartbeat may renew the lease between the two writes; then try again.
    for (;;) {
      await f.store.jobs.updateOne({ _id: job._id }, { $set: { 'lease.expiresAt': new Date(0) } });
      const r = await rescueExpired(f.store, { now: now(), errorHistory: 5, retryAt: () => now() });
      if (r.retrying.length > 0) {
        expect(r.retrying).toEqual([job._id]);
        break;
      }
    }
    const other = await claimNext(f.store, {
      types: TEST_TYPES,
      owner: 'other-worker',
      leaseMs: 60_000,
      now: now(),
    });
    expect(other?._id).toBe(job._id);
    expect((await lost).stage).toBe('running');
    const doc = await get(f.store, job._id);
    expect(doc).toMatchObject({
      state: 'running',
      attempts: 2,
      lease: { owner: 'other-worker', token: other!.lease!.token },
    });
    expect(d.stats().running).toBe(0);
  });

  it('cancelling a running job stops it; nothing is written after', async () => {
    d = await startTestDaemon(f, { worker: { heartbeatMs: 100 } });
    const claimed = d.events.waitFor('job:claimed');
    const { job } = await enqueue(f.store, newJob('sleep', { ms: 600_000 }, {}, now()), now());
    await claimed;
    const lost = d.events.waitFor('job:lost', (e) => e.jobId === job._id);
    await cancel(f.store, job._id, { now: now() });
    await lost;
    const doc = await get(f.store, job._id);
    expect(doc).toMatchObject({ state: 'cancelled', lease: null });
    expect(doc?.lastError ?? null).toBeNull();
  });
});
