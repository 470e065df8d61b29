/**
 * Writes whose reply is lost on the network: the claim may have landed, and the worker must still
 * find (and run) what it claimed rather than strand the jobs until their leases expire.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import {
  AmbiguousClaimError,
  appendEvents,
  claimBatch,
  enqueueMany,
  eventsOf,
  get,
  openStore,
  recoverClaim,
  type Store,
} from '../../src/store/index.js';
import { event } from '../../src/store/events.js';
import { startLossyProxy, type LossyProxy } from '../helpers/lossyProxy.js';
import { collect, startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, TEST_TYPES, type StoreFixture } from './store-helpers.js';

const singleHost = (uri: string) => /^mongodb:\/\/(?:[^@/]*@)?[^/,?]+(?:[/?]|$)/.test(uri);

describe('store: a claim whose reply is lost', () => {
  let f: StoreFixture;
  let proxy: LossyProxy;
  let viaProxy: Store;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));

  beforeEach(async (ctx) => {
    f = await openStoreFixture('ambiguous');
    if (!singleHost(f.t.uri)) ctx.skip();
    proxy = await startLossyProxy(f.t.uri);
    viaProxy = await openStore({ mongoUri: proxy.uri, database: f.t.dbName, appName: 'jobd-test lossy' });
  });
  afterEach(async () => {
    await viaProxy?.close();
    await proxy?.close();
    await f.close();
  });

  it('claimBatch reports the claim as ambiguous; recoverClaim finds exactly the jobs it took', async () => {
    const now = clock.now();
    const queued = await enqueueMany(
      f.store,
      Array.from({ length: 5 }, (_, i) => newJob('noop', { i }, {}, now)),
      now,
    );
    const lost = proxy.loseNextReply('update', 'jobs');
    const err = await claimBatch(viaProxy, {
      types: TEST_TYPES,
      owner: 'w1',
      leaseMs: 30_000,
      now,
      limit: 3,
    }).catch((e: unknown) => e);
    await lost;
    expect(err).toBeInstanceOf(AmbiguousClaimError);
    const pending = (err as AmbiguousClaimError).pending;

    // The update did land: three jobs run under the claim's token, with one attempt counted.
    const running = await f.store.jobs.find({ state: 'running' }).toArray();
    expect(running.map((j) => j.lease?.token)).toEqual([pending.token, pending.token, pending.token]);

    const recovered = await recoverClaim(f.store, pending);
    expect(recovered.map((j) => j._id).sort()).toEqual(running.map((j) => j._id).sort());
    expect(recovered.every((j) => j.attempts === 1 && j.lease?.owner === 'w1')).toBe(true);
    for (const j of recovered) {
      const history = await eventsOf(f.store, j._id);
      expect(history.filter((e) => e.to === 'running')).toHaveLength(1);
    }
    // Untouched jobs are still queued.
    const rest = queued.map((q) => q.job._id).filter((id) => !recovered.some((r) => r._id === id));
    for (const id of rest) expect((await get(f.store, id))?.state).toBe('queued');
  });

  it('recoverClaim of a claim that did not land finds nothing', async () => {
    const now = clock.now();
    await enqueueMany(f.store, [newJob('noop', {}, {}, now)], now);
    const none = await recoverClaim(f.store, {
      token: 'not-a-claim',
      owner: 'w1',
      ids: null,
      from: {},
      at: now,
    });
    expect(none).toEqual([]);
  });

  it('appending the same events again (a retry after a lost reply) stores each once', async () => {
    const now = clock.now();
    const events = [
      event('job-a', 'queued', 'running', now, 1, 'w1'),
      event('job-b', 'queued', 'running', now, 1, 'w1'),
    ];
    const lost = proxy.loseNextReply('insert', 'job_events');
    // The driver retries the insert once on a new connection (a retryable write)...
    await appendEvents(viaProxy, events);
    await lost;
    // ...and the settler's own retry of the same batch meets the copies that landed.
    await appendEvents(viaProxy, events);
    expect(await f.store.events.countDocuments({ jobId: { $in: ['job-a', 'job-b'] } })).toBe(2);
  });

  it('a daemon whose claim reply is lost runs those jobs on the same attempt, without waiting for a rescue', async () => {
    const now = new Date();
    const queued = await enqueueMany(
      f.store,
      Array.from({ length: 8 }, (_, i) => newJob('echo', { i }, {}, now)),
      now,
    );
    const ids = queued.map((q) => q.job._id);
    const lost = proxy.loseNextReply('update', 'jobs');
    // A lease far longer than the test: a stranded job could only finish through a rescue, which
    // would show as a second attempt and a lease-expired error.
    const d = await startTestDaemon(
      { ...f, t: { ...f.t, uri: proxy.uri } },
      { worker: { leaseMs: 600_000, heartbeatMs: 1_000 }, maintenance: { rescueIntervalMs: 300_000 } },
    );
    try {
      const done = collect(d, 'job:completed', ids);
      await lost;
      await done;
    } finally {
      await d.stop({ graceMs: 1_000 });
    }
    for (const id of ids) {
      const job = await get(f.store, id);
      expect(job?.state).toBe('completed');
      expect(job?.attempts).toBe(1);
      expect(job?.errors).toEqual([]);
    }
  });
});
