/**
 * The daemon's change stream ends when the server invalidates it (the jobs collection was dropped).
 * The daemon must open a new one: with polling set far beyond the test's timeout, only a working
 * change stream can start the job enqueued afterwards.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  enqueue,
  setQueuePaused,
  watchJobs,
  watchQueues,
  type Watcher,
  type WatchHandlers,
} from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { collect, startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

describe('daemon: change-stream wake-ups', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('watch');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 1_000 });
    await f.close();
  });

  it('reopens its stream after the server ends it, and keeps waking up for new jobs', async () => {
    const tenMinutes = 600_000;
    d = await startTestDaemon(f, { worker: { pollMinMs: tenMinutes, pollMaxMs: tenMinutes } });
    const daemon = d;

    // A first job proves the stream wakes the daemon at all.
    const first = await enqueue(f.store, newJob('echo', { n: 1 }, {}, new Date()), new Date());
    await collect(daemon, 'job:completed', [first.job._id]);

    const ended = daemon.events.waitFor('db:error', (e) => e.op === 'watch', { timeoutMs: 30_000 });
    await f.t.db.collection('jobs').drop();
    await ended;

    const second = await enqueue(f.store, newJob('echo', { n: 2 }, {}, new Date()), new Date());
    const done = await collect(daemon, 'job:completed', [second.job._id]);
    expect(done.has(second.job._id)).toBe(true);
  });
});

describe('store watchers that only wake a reader', () => {
  let f: StoreFixture;
  beforeEach(async () => {
    f = await openStoreFixture('watch_wake');
  });
  afterEach(async () => {
    await f.close();
  });

  /** Opens the watcher, waits for its stream to be ready, makes a change, and waits for the wake-up. */
  async function wakes(open: (h: WatchHandlers<null>) => Watcher, change: () => Promise<unknown>) {
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    let woke!: () => void;
    const didWake = new Promise<void>((r) => (woke = r));
    const w = open({ onReady: () => ready(), onChange: () => woke(), onError: () => {} });
    try {
      await isReady;
      await change();
      await Promise.race([
        didWake,
        new Promise((_, reject) => setTimeout(() => reject(new Error('no wake-up within 20 s')), 20_000)),
      ]);
    } finally {
      await w.close();
    }
  }

  it('watchJobs (jobctl watch) and watchQueues (pause/resume) fire on a change', async () => {
    await wakes(
      (h) => watchJobs(f.store, h),
      () => enqueue(f.store, newJob('echo', {}, {}, new Date()), new Date()),
    );
    await wakes(
      (h) => watchQueues(f.store, h),
      () => setQueuePaused(f.store, 'echo', true, { now: new Date() }),
    );
  });
});
