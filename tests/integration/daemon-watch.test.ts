/**
 * The daemon's change stream ends when the server invalidates it (the jobs collection was dropped).
 * The daemon must open a new one: with polling set far beyond the test's timeout, only a working
 * change stream can start the job enqueued afterwards. Between changes its streams wait on the
 * server (WATCH_AWAIT_MS) instead of asking again every second, and a change still wakes it at once.
 */
import type { CommandStartedEvent } from 'mongodb';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startDaemon } from '../../src/worker/daemon.js';
import {
  enqueue,
  setQueuePaused,
  watchJobs,
  watchQueues,
  type Watcher,
  type WatchHandlers,
} from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { collect, startTestDaemon, testConfig } from './daemon-helpers.js';
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

  it("an idle daemon's streams wait on the server between changes, and a change still wakes it at once", async () => {
    const tenMinutes = 600_000;
    d = await startDaemon({
      config: testConfig(f, { worker: { pollMinMs: tenMinutes, pollMaxMs: tenMinutes } }),
      logger: pino({ level: 'silent' }),
      monitorCommands: true,
    });
    const daemon = d;
    const getMores: { cursor: string; at: number }[] = [];
    daemon.store.client.on('commandStarted', (e: CommandStartedEvent) => {
      if (e.commandName === 'getMore')
        getMores.push({ cursor: String(e.command.getMore), at: performance.now() });
    });
    // Only the claim stream can start this job (polling is ten minutes away): the streams are open.
    const first = await enqueue(f.store, newJob('echo', { n: 1 }, {}, new Date()), new Date());
    await collect(daemon, 'job:completed', [first.job._id]);

    // A quiet window of 2.5 s: with the server's default wait (1 s) each stream asked twice or more.
    const from = performance.now();
    await new Promise((r) => setTimeout(r, 2_500));
    const perCursor = new Map<string, number>();
    for (const g of getMores) if (g.at >= from) perCursor.set(g.cursor, (perCursor.get(g.cursor) ?? 0) + 1);
    for (const [cursor, n] of perCursor) expect(n, `getMores of cursor ${cursor}`).toBeLessThanOrEqual(1);

    // The stream's getMore is waiting on the server: the change answers it, well before its wait ends.
    const t0 = performance.now();
    const second = await enqueue(f.store, newJob('echo', { n: 2 }, {}, new Date()), new Date());
    await collect(daemon, 'job:completed', [second.job._id]);
    expect(performance.now() - t0).toBeLessThan(5_000);
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
