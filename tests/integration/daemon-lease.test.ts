import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cancel, claimNext, enqueue, eventsOf, get, rescueExpired } from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixtureHandler, startTestDaemon } from './daemon-helpers.js';
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
    d = await startTestDaemon(f, {
      worker: { concurrency: 4 },
      jobTypes: { gate: { handler: fixtureHandler('gate.mjs') } },
    });
    const claimed = new Set<string>();
    const allClaimed = new Promise<void>((resolve) =>
      d!.on('job:claimed', (e) => {
        claimed.add(e.jobId);
        if (claimed.size === 3) resolve();
      }),
    );
    // The quick job finishes once the stop has begun (whenever its child got to run it): within the
    // grace, however slow the machine. The long ones never finish.
    const opened = join(mkdtempSync(join(tmpdir(), 'jobd-gate-')), 'open');
    const quick = await enqueue(f.store, newJob('gate', { file: opened }, {}, now()), now());
    const long1 = await enqueue(f.store, newJob('gate', {}, {}, now()), now());
    const long2 = await enqueue(f.store, newJob('gate', {}, {}, now()), now());
    await allClaimed;
    const requeued: string[] = [];
    d.on('job:requeued', (e) => requeued.push(e.jobId));
    const stopped = d.events.waitFor('daemon:stopped');
    const stopping = d.stop({ graceMs: 20_000 });
    writeFileSync(opened, '');
    await d.events.waitFor('job:completed', (e) => e.jobId === quick.job._id);
    // The quick job is done; the long ones would outlast any grace: cut it short.
    void d.stop({ graceMs: 0 });
    await stopping;
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
    // The test is the rescuer: the daemon's own rescue service stays out (between the test's expiry and
    // its rescue, it could rescue the job first, due at once, and the daemon re-claim it).
    d = await startTestDaemon(f, {
      worker: { leaseMs: 60_000, heartbeatMs: 100 },
      maintenance: { rescueIntervalMs: 3_600_000 },
    });
    const claimed = d.events.waitFor('job:claimed');
    const { job } = await enqueue(f.store, newJob('sleep', { ms: 600_000 }, {}, now()), now());
    const c = await claimed;
    expect(c.jobId).toBe(job._id);
    const lost = d.events.waitFor('job:lost', (e) => e.jobId === job._id);
    // Pretend the lease expired long ago; a rescuer and another worker take the job over.
    // The daemon's heartbeat may renew the lease between the two writes; then try again.
    // The rescued job is due in an hour, so this daemon's claim loop leaves it to the other worker.
    const later = () => new Date(Date.now() + 3_600_000);
    for (;;) {
      await f.store.jobs.updateOne({ _id: job._id }, { $set: { 'lease.expiresAt': new Date(0) } });
      const r = await rescueExpired(f.store, { now: now(), errorHistory: 5, retryAt: later });
      if (r.retrying.length > 0) {
        expect(r.retrying).toEqual([job._id]);
        break;
      }
    }
    const other = await claimNext(f.store, {
      types: TEST_TYPES,
      owner: 'other-worker',
      leaseMs: 60_000,
      now: new Date(Date.now() + 7_200_000),
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
