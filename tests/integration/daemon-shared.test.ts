/**
 * A daemon whose short jobs share one pooled child (pool.sharedChildren 1): a job that hangs past its
 * timeout kills the child; the jobs queued behind it in that child go back to the queue with their
 * attempt given back, run again, and each completes exactly once.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enqueueMany, eventsOf, get } from '../../src/store/index.js';
import type { Daemon } from '../../src/worker/daemon.js';
import { recorder, startTestDaemon } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

const handler = (name: string): string =>
  fileURLToPath(new URL(`../fixtures/handlers/${name}`, import.meta.url));

describe('daemon: short jobs sharing a pooled child', () => {
  let f: StoreFixture;
  let d: Daemon;
  beforeAll(async () => {
    f = await openStoreFixture('daemon_shared');
    d = await startTestDaemon(f, {
      worker: { concurrency: 8, killGraceMs: 300 },
      pool: { sharedChildren: 1 },
      jobTypes: {
        quick: { handler: handler('quick.ts'), maxAttempts: 1 },
        holds: { handler: handler('holds.ts'), maxAttempts: 1 },
      },
    });
  });
  afterAll(async () => {
    await d?.stop({ graceMs: 0 });
    await f.close();
  });
  const now = () => new Date();

  it('a hang past its timeout fails alone; the jobs queued behind it are requeued, attempt unchanged, and complete once', async () => {
    const completed = recorder(d, 'job:completed');
    const failed = recorder(d, 'job:failed');
    // Measured first, one at a time (so one child): the quick type's jobs are short, and the next
    // ones queue on that child.
    for (const i of [1, 2, 3]) {
      const [r] = await enqueueMany(f.store, [newJob('quick', { i }, {}, now())], now());
      await completed.waitAll([r!.job._id]);
    }

    // Claimed first (priority 1 is the highest), so it takes the idle child and the quick jobs queue behind it.
    const [hang, ...quick] = (
      await enqueueMany(
        f.store,
        [
          newJob('holds', { hang: true }, { priority: 1, timeoutMs: 1_500, maxAttempts: 1 }, now()),
          ...[1, 2, 3, 4, 5].map((i) => newJob('quick', { i }, { priority: 9 }, now())),
        ],
        now(),
      )
    ).map((r) => r.job._id);
    await Promise.all([failed.waitAll([hang!]), completed.waitAll(quick)]);

    expect(await get(f.store, hang!)).toMatchObject({
      state: 'failed',
      attempts: 1,
      lastError: { code: 'JOBD_TIMEOUT' },
    });
    let requeued = 0;
    for (const id of quick) {
      expect(await get(f.store, id)).toMatchObject({ state: 'completed', attempts: 1 });
      const to = (await eventsOf(f.store, id)).map((e) => e.to);
      expect(to.filter((s) => s === 'completed')).toHaveLength(1);
      if (to.includes('queued', 1)) requeued++;
    }
    // They waited in the hanging job's child: all went back to the queue once.
    expect(requeued).toBe(quick.length);
  });
});
