import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enqueue, get } from '../../src/store/index.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { waitUntil } from '../helpers/waitFor.js';
import { fixtureHandler, testConfig } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

describe('daemon: claim events ride with the next outcome', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('daemon_claimev');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 0 });
    d = null;
    await f.close();
  });
  const now = () => new Date();

  it("a job claimed while another runs has its claim event written with the other's outcome", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jobd-claimev-'));
    const config = testConfig(f, {
      worker: { concurrency: 2 },
      jobTypes: { gate: { handler: fixtureHandler('gate.mjs') } },
    });
    d = await startDaemon({ config, logger: pino({ level: 'silent' }), monitorCommands: true });
    const inserts: string[][] = [];
    // What each insert of history carried: "<jobId> <to>" per event.
    d.store.client.on('commandStarted', (e) => {
      if (e.commandName === 'insert' && e.command.insert === 'job_events')
        inserts.push(
          (e.command.documents as { jobId: string; to: string }[]).map((x) => `${x.jobId} ${x.to}`),
        );
    });
    const a = await enqueue(f.store, newJob('gate', { file: join(dir, 'a') }, {}, now()), now());
    // Its claim's event, written on its own once its hold passed (nothing else was written meanwhile).
    await waitUntil(
      async () => (await f.store.events.countDocuments({ jobId: a.job._id, to: 'running' })) === 1,
      {
        what: "a's claim event",
      },
    );
    const claimedB = d.events.waitFor('job:claimed');
    const b = await enqueue(f.store, newJob('gate', { file: join(dir, 'b') }, {}, now()), now());
    expect((await claimedB).jobId).toBe(b.job._id);
    // b's claim event waits up to a second (the settler's hold) for an outcome to ride with.
    const claimedAt = performance.now();
    const completedA = d.events.waitFor('job:completed');
    writeFileSync(join(dir, 'a'), '');
    expect((await completedA).jobId).toBe(a.job._id);
    // Measured from after the claim to after a's outcome landed: longer than the real wait.
    const waited = performance.now() - claimedAt;
    await waitUntil(
      async () => (await f.store.events.countDocuments({ jobId: b.job._id, to: 'running' })) === 1,
      {
        what: "b's claim event",
      },
    );
    if (waited < 1_000) {
      expect(inserts).toContainEqual([`${b.job._id} running`, `${a.job._id} completed`]);
    } else {
      // A machine so loaded that a's outcome came after the hold: b's claim event went on its own or
      // with a's, once either way.
      expect(inserts.flat().filter((e) => e === `${b.job._id} running`)).toHaveLength(1);
    }
    expect((await get(f.store, b.job._id))?.state).toBe('running');
  });

  it('the claim event of a job that runs long is written within about a second, while it runs', async () => {
    d = await startDaemon({ config: testConfig(f), logger: pino({ level: 'silent' }) });
    const claimed = d.events.waitFor('job:claimed');
    const { job } = await enqueue(f.store, newJob('sleep', { ms: 20_000 }, {}, now()), now());
    await claimed;
    const t0 = Date.now();
    // Read from the collection itself: a reader of the history would not rebuild so young a gap.
    await waitUntil(
      async () => (await f.store.events.countDocuments({ jobId: job._id, to: 'running' })) === 1,
      {
        what: 'the claim event',
        timeoutMs: 5_000,
      },
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect((await get(f.store, job._id))?.state).toBe('running');
  });
});
