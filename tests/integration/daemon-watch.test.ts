/**
 * The daemon's change stream ends when the server invalidates it (the jobs collection was dropped).
 * The daemon must open a new one: with polling set far beyond the test's timeout, only a working
 * change stream can start the job enqueued afterwards.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enqueue } from '../../src/store/index.js';
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
