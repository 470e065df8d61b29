import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MongoBulkWriteError, ObjectId, type Document } from 'mongodb';
import { ManualClock } from '../../src/clock.js';
import { IllegalTransitionError, NotFoundError } from '../../src/errors.js';
import {
  appendEvents,
  cancel,
  claimNext,
  completeIfRunning,
  completeManyIfRunning,
  enqueue,
  enqueueMany,
  eventsOf,
  failIfRunning,
  get,
  heartbeatLeases,
  progressIfRunning,
  releaseWaiting,
  requeueIfRunning,
  rescueExpired,
  retry,
  claimBatch,
  isTransientDbError,
  openStore,
} from '../../src/store/index.js';
import { event } from '../../src/store/events.js';
import { newJob, openStoreFixture, TEST_TYPES, type StoreFixture } from './store-helpers.js';

const ctx = (now: Date, owner = 'w1') => ({ owner, now, errorHistory: 3 });

describe('store: guarded transitions', () => {
  let f: StoreFixture;
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  beforeEach(async () => {
    f = await openStoreFixture('transitions');
  });
  afterEach(async () => {
    await f.close();
  });

  async function claimOne(owner = 'w1', leaseMs = 30_000) {
    const j = await claimNext(f.store, { types: TEST_TYPES, owner, leaseMs, now: clock.now() });
    if (!j?.lease) throw new Error('nothing claimed');
    return { job: j, token: j.lease.token };
  }

  it('completes a running job under its lease, with history', async () => {
    const { job: queued } = await enqueue(f.store, newJob('echo', { a: 1 }, {}, clock.now()), clock.now());
    const { job, token } = await claimOne();
    expect(job._id).toBe(queued._id);
    expect(
      await progressIfRunning(f.store, {
        jobId: job._id,
        token,
        percent: 50,
        message: 'half',
        now: clock.now(),
      }),
    ).toBe(true);
    expect(
      await completeIfRunning(
        f.store,
        { jobId: job._id, token, attempt: 1, seq: job.seq, result: { a: 1 } },
        ctx(clock.now()),
      ),
    ).toBe(true);
    const done = await get(f.store, job._id);
    expect(done).toMatchObject({ state: 'completed', result: { a: 1 }, attempts: 1, lease: null });
    expect(done?.finishedAt).toEqual(clock.now());
    const ev = await eventsOf(f.store, job._id);
    expect(ev.map((e) => e.to)).toEqual(['queued', 'running', 'completed']);
    expect(ev[2]).toMatchObject({ from: 'running', worker: 'w1', attempt: 1 });
  });

  it('fencing: a worker whose lease was rescued and re-claimed cannot write', async () => {
    await enqueue(f.store, newJob('noop', {}, {}, clock.now()), clock.now());
    const old = await claimOne('w-old', 1_000);
    clock.advance(5_000);
    const rescued = await rescueExpired(f.store, {
      now: clock.now(),
      errorHistory: 3,
      retryAt: () => clock.now(),
    });
    expect(rescued.retrying).toEqual([old.job._id]);
    const fresh = await claimOne('w-new');
    expect(fresh.job._id).toBe(old.job._id);
    expect(fresh.job.attempts).toBe(2);

    const now = clock.now();
    expect(
      await completeIfRunning(
        f.store,
        { jobId: old.job._id, token: old.token, attempt: 1, seq: old.job.seq, result: 'stale' },
        ctx(now, 'w-old'),
      ),
    ).toBe(false);
    expect(
      await failIfRunning(
        f.store,
        {
          jobId: old.job._id,
          token: old.token,
          attempt: 1,
          seq: old.job.seq,
          error: { name: 'Error', message: 'x' },
          retryAt: null,
        },
        ctx(now, 'w-old'),
      ),
    ).toBe(false);
    expect(await progressIfRunning(f.store, { jobId: old.job._id, token: old.token, percent: 99, now })).toBe(
      false,
    );
    const hb = await heartbeatLeases(f.store, {
      leases: [{ jobId: old.job._id, token: old.token }],
      leaseMs: 30_000,
      now,
    });
    expect(hb).toEqual({
      renewed: [],
      lost: [old.job._id],
      lostLeases: [{ jobId: old.job._id, token: old.token }],
    });
    // The same job held twice by one daemon (an attempt still settling, and the job claimed again):
    // only the old token is reported lost, so only its holder is stopped.
    const both = await heartbeatLeases(f.store, {
      leases: [
        { jobId: old.job._id, token: old.token },
        { jobId: fresh.job._id, token: fresh.token },
      ],
      leaseMs: 30_000,
      now,
    });
    expect(both.renewed).toEqual([fresh.job._id]);
    expect(both.lostLeases).toEqual([{ jobId: old.job._id, token: old.token }]);

    const doc = await get(f.store, old.job._id);
    expect(doc).toMatchObject({ state: 'running', lease: { owner: 'w-new', token: fresh.token } });
    expect(doc?.result).toBeUndefined();
    expect(
      await completeIfRunning(
        f.store,
        { jobId: fresh.job._id, token: fresh.token, attempt: 2, seq: fresh.job.seq, result: 'ok' },
        ctx(now, 'w-new'),
      ),
    ).toBe(true);
    const ev = await eventsOf(f.store, old.job._id);
    expect(ev.map((e) => `${e.from}->${e.to}`)).toEqual([
      'null->queued',
      'queued->running',
      'running->retrying',
      'retrying->running',
      'running->completed',
    ]);
    expect(ev[2]?.message).toBe('lease expired; worker w-old stopped renewing it');
  });

  it('rescue fails a job whose attempts are used up, naming the lost worker', async () => {
    await enqueue(f.store, newJob('noop', {}, { maxAttempts: 1 }, clock.now()), clock.now());
    const { job } = await claimOne('w-dead', 1_000);
    // Not expired yet: nothing to rescue.
    expect(await rescueExpired(f.store, { now: clock.now(), errorHistory: 3, retryAt: () => null })).toEqual({
      retrying: [],
      failed: [],
    });
    clock.advance(2_000);
    const r = await rescueExpired(f.store, { now: clock.now(), errorHistory: 3, retryAt: () => null });
    expect(r.failed).toEqual([job._id]);
    const doc = await get(f.store, job._id);
    expect(doc?.state).toBe('failed');
    expect(doc?.lastError).toMatchObject({
      name: 'LeaseExpiredError',
      code: 'JOBD_LEASE_EXPIRED',
      worker: 'w-dead',
    });
    expect(doc?.lastError?.message).toBe('lease expired; worker w-dead stopped renewing it');
  });

  it('concurrent rescuers rescue each job once', async () => {
    await enqueueMany(
      f.store,
      Array.from({ length: 20 }, () => newJob('noop', {}, {}, clock.now())),
      clock.now(),
    );
    await claimBatch(f.store, {
      types: TEST_TYPES,
      owner: 'w-dead',
      leaseMs: 1_000,
      now: clock.now(),
      limit: 20,
    });
    clock.advance(2_000);
    const opts = { now: clock.now(), errorHistory: 3, retryAt: () => clock.now() };
    const results = await Promise.all([1, 2, 3].map(() => rescueExpired(f.store, opts)));
    const all = results.flatMap((r) => r.retrying);
    expect(all).toHaveLength(20);
    expect(new Set(all).size).toBe(20);
  });

  it('heartbeat renews held leases and keeps them from rescue', async () => {
    await enqueueMany(
      f.store,
      [newJob('noop', {}, {}, clock.now()), newJob('noop', {}, {}, clock.now())],
      clock.now(),
    );
    const batch = await claimBatch(f.store, {
      types: TEST_TYPES,
      owner: 'w1',
      leaseMs: 1_000,
      now: clock.now(),
      limit: 2,
    });
    clock.advance(800);
    const hb = await heartbeatLeases(f.store, {
      leases: batch.map((j) => ({ jobId: j._id, token: j.lease!.token })),
      leaseMs: 1_000,
      now: clock.now(),
    });
    expect(hb.renewed.sort()).toEqual(batch.map((j) => j._id).sort());
    clock.advance(800);
    expect(
      (await rescueExpired(f.store, { now: clock.now(), errorHistory: 3, retryAt: () => null })).failed,
    ).toEqual([]);
  });

  it('fail → retrying keeps a bounded error history; fail at last attempt → failed', async () => {
    await enqueue(f.store, newJob('fail', {}, { maxAttempts: 5 }, clock.now()), clock.now());
    for (let i = 1; i <= 5; i++) {
      const { job, token } = await claimOne();
      const retryAt = i < 5 ? new Date(clock.now().getTime() + 1_000) : null;
      const ok = await failIfRunning(
        f.store,
        {
          jobId: job._id,
          token,
          attempt: i,
          seq: job.seq,
          error: { name: 'Error', message: `boom ${i}` },
          retryAt,
        },
        ctx(clock.now()),
      );
      expect(ok).toBe(true);
      clock.advance(1_000);
    }
    const [doc] = await f.store.jobs.find({}).toArray();
    expect(doc?.state).toBe('failed');
    expect(doc?.errors.map((e) => e.message)).toEqual(['boom 3', 'boom 4', 'boom 5']);
    expect(doc?.lastError?.message).toBe('boom 5');
  });

  it('requeue gives the attempt back', async () => {
    await enqueue(f.store, newJob('sleep', {}, {}, clock.now()), clock.now());
    const { job, token } = await claimOne();
    expect(job.attempts).toBe(1);
    expect(
      await requeueIfRunning(f.store, { jobId: job._id, token, attempt: 1, seq: job.seq }, ctx(clock.now())),
    ).toBe(true);
    expect(await get(f.store, job._id)).toMatchObject({ state: 'queued', attempts: 0, lease: null });
    // Repeating a settlement that landed reports it landed (the settler retries writes after network errors)...
    expect(
      await requeueIfRunning(f.store, { jobId: job._id, token, attempt: 1, seq: job.seq }, ctx(clock.now())),
    ).toBe(true);
    // ...but once the job is claimed again, the old lease writes nothing.
    await claimOne('w2');
    expect(
      await requeueIfRunning(f.store, { jobId: job._id, token, attempt: 1, seq: job.seq }, ctx(clock.now())),
    ).toBe(false);
    expect(await get(f.store, job._id)).toMatchObject({
      state: 'running',
      attempts: 1,
      lease: { owner: 'w2' },
    });
  });

  /** `n` noop jobs enqueued and claimed by w1 in one batch. */
  async function enqueueAndClaim(n: number, leaseMs: number) {
    await enqueueMany(
      f.store,
      Array.from({ length: n }, () => newJob('noop', {}, {}, clock.now())),
      clock.now(),
    );
    return claimBatch(f.store, { types: TEST_TYPES, owner: 'w1', leaseMs, now: clock.now(), limit: n });
  }

  it('completeManyIfRunning reports which jobs landed and which leases were lost', async () => {
    const batch = await enqueueAndClaim(4, 30_000);
    await cancel(f.store, batch[1]!._id, { now: clock.now() });
    const res = await completeManyIfRunning(
      f.store,
      batch.map((j) => ({ jobId: j._id, token: j.lease!.token, attempt: 1, seq: j.seq, result: j._id })),
      ctx(clock.now()),
    );
    expect(res.lost).toEqual([batch[1]!._id]);
    expect(res.landed.sort()).toEqual([batch[0]!._id, batch[2]!._id, batch[3]!._id].sort());
    expect((await get(f.store, batch[1]!._id))?.state).toBe('cancelled');
  });

  it('completions that share one update are still fenced job by job', async () => {
    const batch = await enqueueAndClaim(5, 1_000);
    expect(batch).toHaveLength(5);
    const token = batch[0]!.lease!.token;
    // batch[2]'s lease expires and another worker claims it again; batch[1] is cancelled.
    clock.advance(5_000);
    const kept = [0, 1, 3, 4].map((i) => ({ jobId: batch[i]!._id, token }));
    await heartbeatLeases(f.store, { leases: kept, leaseMs: 30_000, now: clock.now() });
    await rescueExpired(f.store, { now: clock.now(), errorHistory: 3, retryAt: () => clock.now() });
    const again = await claimOne('w2');
    expect(again.job._id).toBe(batch[2]!._id);
    await cancel(f.store, batch[1]!._id, { now: clock.now() });

    const now = clock.now();
    // The same result, log tail and timings under one lease token: the update is the same for all five.
    const res = await completeManyIfRunning(
      f.store,
      batch.map((j) => ({
        jobId: j._id,
        token,
        attempt: 1,
        seq: j.seq,
        result: null,
        resources: { wallMs: 0 },
        logTail: '',
      })),
      ctx(now),
    );
    expect(res.lost.sort()).toEqual([batch[1]!._id, batch[2]!._id].sort());
    expect(res.landed.sort()).toEqual([0, 3, 4].map((i) => batch[i]!._id).sort());
    for (const i of [0, 3, 4]) {
      expect(await get(f.store, batch[i]!._id)).toMatchObject({
        state: 'completed',
        result: null,
        resources: { wallMs: 0 },
        logTail: '',
        finishedAt: now,
        lease: null,
      });
      const ev = await eventsOf(f.store, batch[i]!._id);
      expect(ev.map((e) => `${e.from}->${e.to}`)).toEqual([
        'null->queued',
        'queued->running',
        'running->completed',
      ]);
    }
    expect((await get(f.store, batch[1]!._id))?.state).toBe('cancelled');
    const stolen = await get(f.store, batch[2]!._id);
    expect(stolen).toMatchObject({ state: 'running', lease: { owner: 'w2', token: again.token } });
    expect(stolen?.result).toBeUndefined();

    // Written again (a reply lost in transit): the ones that landed read back as landed, none twice.
    const twice = await completeManyIfRunning(
      f.store,
      [0, 3, 4].map((i) => ({
        jobId: batch[i]!._id,
        token,
        attempt: 1,
        seq: batch[i]!.seq,
        result: null,
        resources: { wallMs: 0 },
        logTail: '',
      })),
      ctx(clock.now()),
    );
    expect(twice.landed.sort()).toEqual(res.landed);
    for (const i of [0, 3, 4]) expect((await get(f.store, batch[i]!._id))?.finishedAt).toEqual(now);
  });

  it('illegal transitions raise IllegalTransitionError naming the job, its state and what is allowed', async () => {
    const { job } = await enqueue(f.store, newJob('noop', {}, {}, clock.now()), clock.now());
    await expect(retry(f.store, job._id, { now: clock.now() })).rejects.toThrow(IllegalTransitionError);
    await expect(retry(f.store, job._id, { now: clock.now() })).rejects.toThrow(
      `cannot retry job ${job._id}: it is queued; retry (operator retry) is allowed only from failed, cancelled`,
    );
    await expect(releaseWaiting(f.store, job._id, { now: clock.now() })).rejects.toThrow(/it is queued/);
    const { token, job: claimed } = await claimOne();
    await completeIfRunning(
      f.store,
      { jobId: job._id, token, attempt: 1, seq: claimed.seq, result: null },
      ctx(clock.now()),
    );
    const err = await cancel(f.store, job._id, { now: clock.now() }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IllegalTransitionError);
    expect((err as IllegalTransitionError).code).toBe('JOBD_ILLEGAL_TRANSITION');
    expect((err as Error).message).toMatch(
      /it is completed; cancel .* allowed only from waiting, queued, retrying, running/,
    );
    await expect(cancel(f.store, 'nope', { now: clock.now() })).rejects.toThrow(NotFoundError);
    expect((await get(f.store, job._id))?.state).toBe('completed');
  });

  it('operator retry and cancel; waiting jobs are released', async () => {
    const { job } = await enqueue(f.store, newJob('noop', {}, { maxAttempts: 1 }, clock.now()), clock.now());
    const { token, job: claimed } = await claimOne();
    await failIfRunning(
      f.store,
      {
        jobId: job._id,
        token,
        attempt: 1,
        seq: claimed.seq,
        error: { name: 'E', message: 'x' },
        retryAt: null,
      },
      ctx(clock.now()),
    );
    const again = await retry(f.store, job._id, { now: clock.now() });
    expect(again).toMatchObject({ state: 'queued', attempts: 0 });
    expect(again.errors).toHaveLength(1);
    expect((await cancel(f.store, job._id, { now: clock.now() })).state).toBe('cancelled');

    const w = await enqueue(f.store, { ...newJob('noop', {}, {}, clock.now()), waiting: true }, clock.now());
    expect(w.job.state).toBe('waiting');
    expect(
      await claimNext(f.store, { types: TEST_TYPES, owner: 'w1', leaseMs: 1000, now: clock.now() }),
    ).toBeNull();
    expect((await releaseWaiting(f.store, w.job._id, { now: clock.now() })).state).toBe('queued');
  });

  it('dedupeKey: a second enqueue returns the unfinished job; after it finishes the key is free', async () => {
    const now = clock.now();
    const a = await enqueue(f.store, newJob('noop', { n: 1 }, { dedupeKey: 'k1' }, now), now);
    const b = await enqueue(f.store, newJob('noop', { n: 2 }, { dedupeKey: 'k1' }, now), now);
    expect(a.created).toBe(true);
    expect(b).toMatchObject({ created: false, job: { _id: a.job._id } });
    const many = await enqueueMany(
      f.store,
      [
        newJob('noop', {}, { dedupeKey: 'k1' }, now),
        newJob('noop', {}, { dedupeKey: 'k2' }, now),
        newJob('noop', {}, { dedupeKey: 'k2' }, now),
      ],
      now,
    );
    expect(many.map((r) => r.created)).toEqual([false, true, false]);
    expect(many[0]!.job._id).toBe(a.job._id);
    expect(many[2]!.job._id).toBe(many[1]!.job._id);
    expect(await f.store.jobs.countDocuments({})).toBe(2);

    await cancel(f.store, a.job._id, { now });
    const c = await enqueue(f.store, newJob('noop', { n: 3 }, { dedupeKey: 'k1' }, now), now);
    expect(c.created).toBe(true);
    expect(c.job._id).not.toBe(a.job._id);
    // Retrying the cancelled one would make two unfinished jobs share the key.
    await expect(retry(f.store, a.job._id, { now })).rejects.toThrow(/holds its dedupeKey "k1"/);
  });
});

/** A second store on the fixture's database that records the commands named in `names` it sends. */
async function recordingStore(
  f: StoreFixture,
  appName: string,
  names: string[],
): Promise<{ monitored: StoreFixture['store']; sent: Document[] }> {
  const monitored = await openStore({
    mongoUri: f.t.uri,
    database: f.t.dbName,
    appName,
    monitorCommands: true,
    ensureIndexes: false,
  });
  const sent: Document[] = [];
  monitored.client.on('commandStarted', (e) => {
    if (names.includes(e.commandName)) sent.push(e.command);
  });
  return { monitored, sent };
}
describe('store: appending events', () => {
  let f: StoreFixture;
  const now = new Date(Date.UTC(2026, 0, 1));
  afterEach(async () => {
    await f?.close();
  });

  it('stores each event once, gives unnumbered ones an id first, and takes repeats as stored', async () => {
    f = await openStoreFixture('append_events');
    const events = [
      event('ev-a', 'queued', 'running', now, 1, 'w1', null, 2),
      event('ev-b', 'queued', 'running', now, 1, 'w1'),
    ];
    await appendEvents(f.store, events);
    expect(events[1]!._id).toBeInstanceOf(ObjectId);
    // The same array again (a caller's retry after an ambiguous failure) and a mix with a new one.
    await appendEvents(f.store, events);
    await appendEvents(f.store, [...events, event('ev-c', null, 'queued', now, 0, null, 'enqueued', 1)]);
    const stored = await f.store.events.find({ jobId: { $in: ['ev-a', 'ev-b', 'ev-c'] } }).toArray();
    expect(stored.map((e) => e.jobId).sort()).toEqual(['ev-a', 'ev-b', 'ev-c']);
    expect(stored.find((e) => e.jobId === 'ev-a')?._id).toBe('ev-a:2');
  });

  it('a write error other than a duplicate key rejects as a bulk write error; the other events are stored', async () => {
    f = await openStoreFixture('append_events_refused');
    const bad = { ...event('ev-bad', 'queued', 'running', now, 1, 'w1'), _id: ['not', 'an', 'id'] };
    const good = event('ev-good', 'queued', 'running', now, 1, 'w1', null, 2);
    const err = await appendEvents(f.store, [bad, good]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoBulkWriteError);
    const codes = [(err as MongoBulkWriteError).writeErrors].flat().map((e) => e.code);
    expect(codes).toEqual([53]);
    expect(isTransientDbError(err)).toBe(false);
    expect(await f.store.events.countDocuments({ jobId: 'ev-good' })).toBe(1);
  });

  it("sends the settlement's update and the events' insert with the store's write concern", async () => {
    f = await openStoreFixture('append_events_wc');
    await enqueueMany(f.store, [newJob('noop', {}, {}, now), newJob('noop', {}, {}, now)], now);
    const claimed = await claimBatch(f.store, {
      types: TEST_TYPES,
      owner: 'w1',
      leaseMs: 30_000,
      now,
      limit: 2,
    });
    expect(claimed).toHaveLength(2);
    const { monitored, sent } = await recordingStore(f, 'jobd-test wc', ['insert', 'update']);
    try {
      const res = await completeManyIfRunning(
        monitored,
        claimed.map((j) => ({ jobId: j._id, token: j.lease!.token, attempt: 1, seq: j.seq, result: null })),
        ctx(now),
      );
      expect(res.landed).toHaveLength(2);
    } finally {
      await monitored.close();
    }
    expect(sent.map((c) => Object.keys(c)[0])).toEqual(['update', 'insert']);
    for (const c of sent) expect(c.writeConcern).toMatchObject({ w: 'majority' });
    for (const j of claimed) expect((await get(f.store, j._id))?.state).toBe('completed');
    expect(await f.store.events.countDocuments({ jobId: { $in: claimed.map((j) => j._id) } })).toBe(6);
  });

  it("sends a batch claim's update with the store's write concern, and counts what it modified", async () => {
    f = await openStoreFixture('claim_wc');
    await enqueueMany(f.store, [newJob('noop', {}, {}, now), newJob('noop', {}, {}, now)], now);
    const { monitored, sent } = await recordingStore(f, 'jobd-test claim wc', ['update']);
    try {
      const claimed = await claimBatch(monitored, {
        types: TEST_TYPES,
        owner: 'w1',
        leaseMs: 30_000,
        now,
        limit: 5,
      });
      expect(claimed).toHaveLength(2);
      // Nothing left: the second claim finds no candidate and sends no update.
      expect(
        await claimBatch(monitored, { types: TEST_TYPES, owner: 'w2', leaseMs: 30_000, now, limit: 5 }),
      ).toEqual([]);
    } finally {
      await monitored.close();
    }
    expect(sent).toHaveLength(1);
    expect(sent[0]!.writeConcern).toMatchObject({ w: 'majority' });
    expect(await f.store.jobs.countDocuments({ state: 'running', 'lease.owner': 'w1' })).toBe(2);
  });

  it("reads a batch claim's candidates as one find command, in claim order, that leaves no cursor open", async () => {
    f = await openStoreFixture('claim_find');
    const jobs = [1, 2, 3, 4, 5].map((i) => newJob('noop', { i }, { priority: 6 - i }, now));
    await enqueueMany(f.store, jobs, now);
    // The collection's read concern goes with the command, as a cursor would send it.
    const uri = new URL(f.t.uri);
    uri.searchParams.set('readConcernLevel', 'majority');
    const monitored = await openStore({
      mongoUri: uri.toString(),
      database: f.t.dbName,
      appName: 'jobd-test claim find',
      monitorCommands: true,
      ensureIndexes: false,
    });
    const sent: Document[] = [];
    monitored.client.on('commandStarted', (e) => {
      if (['find', 'getMore', 'killCursors'].includes(e.commandName)) sent.push(e.command);
    });
    const replies: Document[] = [];
    monitored.client.on('commandSucceeded', (e) => {
      if (e.commandName === 'find') replies.push(e.reply as Document);
    });
    let claimed;
    try {
      claimed = await claimBatch(monitored, {
        types: TEST_TYPES,
        owner: 'w1',
        leaseMs: 30_000,
        now,
        limit: 3,
      });
    } finally {
      await monitored.close();
    }
    // Highest priority (1) first: the last three enqueued.
    expect(claimed.map((j) => (j.params as { i: number }).i)).toEqual([5, 4, 3]);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({
      find: 'jobs',
      sort: { priority: 1, runAt: 1, _id: 1 },
      limit: 3,
      singleBatch: true,
      readConcern: { level: 'majority' },
    });
    expect(Number((replies[0]!.cursor as Document).id)).toBe(0);
    expect(await f.store.jobs.countDocuments({ state: 'running', 'lease.owner': 'w1' })).toBe(3);
  });
});

describe('store: event history order', () => {
  it('puts events that tie on time in chain order, whatever their ids say', async () => {
    const f = await openStoreFixture('event_order');
    try {
      const at = new Date(Date.UTC(2026, 0, 1));
      // Ids made in reverse of the real order, as two processes can make them within one second.
      const ids = [new ObjectId(), new ObjectId(), new ObjectId()].reverse();
      await f.store.events.insertMany([
        { _id: ids[0], jobId: 'j1', from: null, to: 'queued', at, attempt: 0 },
        { _id: ids[1], jobId: 'j1', from: 'queued', to: 'running', at, attempt: 1 },
        {
          _id: ids[2],
          jobId: 'j1',
          from: 'running',
          to: 'completed',
          at: new Date(at.getTime() + 5),
          attempt: 1,
        },
      ] as never[]);
      expect((await eventsOf(f.store, 'j1')).map((e) => `${e.from}>${e.to}`)).toEqual([
        'null>queued',
        'queued>running',
        'running>completed',
      ]);
    } finally {
      await f.close();
    }
  });
});
