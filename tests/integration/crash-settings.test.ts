/**
 * A daemon process refuses bad settings and misconfigurations no retry can cure (exit 2, naming the
 * key, never printing a password), and leaves a job of a type it does not know for a daemon that
 * knows it, while it keeps running and takes the next job.
 */
import { createServer, type AddressInfo } from 'node:net';
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

  it('unknown job type: the job waits in queued for a daemon that runs it; this daemon completes the next job', async () => {
    const d = await startDaemonProcess(writeDaemonSettings({ mongoUri: t.uri, database: t.dbName }));
    const { job: unknown } = await client.enqueue('no-such-type', { a: 1 });
    const { job: next } = await client.enqueue('echo', { x: 1 }, { priority: 9 });
    expect(await waitForDoc(client.store.jobs, { _id: next._id, state: 'completed' })).toMatchObject({
      result: { x: 1 },
    });
    expect(await client.get(unknown._id)).toMatchObject({ state: 'queued', attempts: 0, lastError: null });
    expect(d.lines().some((l) => l.jobId === unknown._id)).toBe(false);
    expect(d.alive).toBe(true);
    expect((await d.stop()).code).toBe(0);
  });

  /** Runs jobd to its exit; a misconfiguration must end it quickly, not after retrying for a minute. */
  async function jobdExits(settings: { file: string }) {
    const t0 = Date.now();
    const r = await runCli(JOBD_BIN, ['--settings', settings.file], { timeoutMs: 30_000 });
    return { ...r, ms: Date.now() - t0 };
  }

  it('a connection string option the driver refuses: exit 2 with the reason, the password never shown', async () => {
    const s = writeDaemonSettings({
      mongoUri:
        'mongodb://admin:S3cretPW@127.0.0.1:27017/?tls=true&tlsInsecure=true&tlsAllowInvalidCertificates=true',
      database: t.dbName,
    });
    const r = await jobdExits(s);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('mongoUri');
    expect(r.stderr + r.stdout).not.toContain('S3cretPW');
    expect(r.stdout).not.toContain('database unreachable');
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('a dataDir under /proc: exit 2 naming dataDir, instead of spinning in mkdir', async () => {
    const s = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      extra: { dataDir: '/proc/jobd-no-such/var' },
    });
    const r = await jobdExits(s);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/dataDir \/proc\/jobd-no-such\/var: cannot create \/proc\/jobd-no-such/);
    expect(r.ms).toBeLessThan(20_000);
  });

  it('the embedded port in use: exit 2 naming embedded.port and its value, no stack trace', async () => {
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const port = (squatter.address() as AddressInfo).port;
    try {
      const s = writeDaemonSettings({
        mongoUri: 'embedded',
        database: t.dbName,
        extra: { embedded: { host: '127.0.0.1', port } },
      });
      const r = await jobdExits(s);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`embedded.port ${port} on 127.0.0.1 is already in use by another process`);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    } finally {
      squatter.close();
    }
  });
});
