/**
 * A daemon process refuses bad settings (exit 2, naming the key), and a job of a type it does not
 * know fails with a clear error while the daemon keeps running and takes the next job.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  JOBD_BIN,
  killAllDaemons,
  runCli,
  startDaemonProcess,
  writeDaemonSettings,
} from '../helpers/daemonProcess.js';
import { waitForDoc } from '../helpers/waitFor.js';

describe('crash: settings and unknown job types', () => {
  let t: TestDb;
  let client: JobdClient;
  beforeEach(async () => {
    t = await openTestDb('crash_settings');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
  });
  afterEach(async () => {
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  it('bad settings: exit 2 with a message naming the key and the value', async () => {
    const s = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName, worker: { leaseMs: 'soon' } });
    const r = await runCli(JOBD_BIN, ['--settings', s.file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('worker.leaseMs');
    expect(r.stderr).toContain('"soon"');
    expect(r.stdout).not.toContain('jobd started');
  });

  it('unknown job type: that job fails with a clear error; the daemon keeps running and completes the next job', async () => {
    const d = await startDaemonProcess(writeDaemonSettings({ mongoUri: t.uri, database: t.dbName }));
    const { job: unknown } = await client.enqueue('no-such-type', { a: 1 });
    const failed = await d.waitForLog((l) => l.msg === 'job failed' && l.jobId === unknown._id);
    expect(failed.code).toBe('JOBD_UNKNOWN_JOB_TYPE');
    const doc = (await client.get(unknown._id))!;
    expect(doc).toMatchObject({
      state: 'failed',
      attempts: 1,
      lastError: { name: 'UnknownJobTypeError', code: 'JOBD_UNKNOWN_JOB_TYPE' },
    });
    expect(doc.lastError!.message).toContain('unknown job type "no-such-type"');
    expect(doc.lastError!.message).toContain('echo');

    const { job: next } = await client.enqueue('echo', { x: 1 });
    expect(await waitForDoc(client.store.jobs, { _id: next._id, state: 'completed' })).toMatchObject({
      result: { x: 1 },
    });
    expect(d.alive).toBe(true);
    expect((await d.stop()).code).toBe(0);
  });
});
