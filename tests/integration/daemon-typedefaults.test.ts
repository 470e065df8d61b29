/**
 * A job enqueued by code that does not know its type's settings carries none of its own, and the
 * daemon that runs it applies the type's timeout and maxAttempts from its settings.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { get } from '../../src/store/index.js';
import { collect, fixtureHandler, startTestDaemon } from './daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from './store-helpers.js';

describe('daemon: the job type decides what the enqueuer left out', () => {
  let f: StoreFixture;
  let client: JobdClient;
  beforeEach(async () => {
    f = await openStoreFixture('typedefaults');
    client = await JobdClient.connect({ mongoUri: f.t.uri, database: f.t.dbName });
  });
  afterEach(async () => {
    await client.close();
    await f.close();
  });

  it("times out and gives up by the type's settings when the job has none", async () => {
    const { job } = await client.enqueue('hang', {});
    expect(job.timeoutMs).toBeNull();
    expect(job.maxAttempts).toBeNull();

    const d = await startTestDaemon(f, {
      jobTypes: { hang: { handler: fixtureHandler('hang.mjs'), timeoutMs: 1_500, maxAttempts: 2 } },
      worker: { killGraceMs: 100 },
    });
    try {
      await collect(d, 'job:failed', [job._id]);
    } finally {
      await d.stop({ graceMs: 1_000 });
    }
    const done = await get(f.store, job._id);
    expect(done?.state).toBe('failed');
    expect(done?.attempts).toBe(2);
    expect(done?.lastError?.code).toBe('JOBD_TIMEOUT');
    expect(done?.lastError?.message).toContain('1500 ms');
  });

  it('an explicit timeout on the job wins over the type', async () => {
    const { job } = await client.enqueue('hang', {}, { timeoutMs: 1_200, maxAttempts: 1 });
    expect(job.timeoutMs).toBe(1_200);
    const d = await startTestDaemon(f, {
      jobTypes: { hang: { handler: fixtureHandler('hang.mjs'), timeoutMs: 600_000, maxAttempts: 5 } },
      worker: { killGraceMs: 100 },
    });
    try {
      await collect(d, 'job:failed', [job._id]);
    } finally {
      await d.stop({ graceMs: 1_000 });
    }
    const done = await get(f.store, job._id);
    expect(done?.attempts).toBe(1);
    expect(done?.lastError?.message).toContain('1200 ms');
  });
});
