/**
 * The database goes away while a daemon works: a standalone embedded server process (its own data
 * directory, whatever the harness backend is) is SIGKILLed mid-run, stays down for a couple of the
 * daemon's failed claim rounds (each one waits out the driver's 5 s server selection, so ~10 s), and
 * comes back on the same port and data directory. The daemon logs the outage, reconnects and
 * finishes every job.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import {
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  crashFixture,
} from '../helpers/daemonProcess.js';
import { killAllEmbeddedProcesses, startEmbeddedProcess } from '../helpers/embeddedProcess.js';
import { waitForCount } from '../helpers/waitFor.js';

const JOBS = 200;

describe('crash: database outage', () => {
  let client: JobdClient | null = null;
  const dirs: string[] = [];
  afterEach(async () => {
    await killAllDaemons();
    await client?.close().catch(() => {});
    client = null;
    await killAllEmbeddedProcesses();
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it(
    'the daemon logs the outage, reconnects to the restarted server and finishes every job',
    { timeout: 90_000 },
    async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'jobd-outage-db-'));
      dirs.push(dataDir);
      const server = await startEmbeddedProcess({ dataDir });
      const database = 'jobd_outage';
      const s = writeDaemonSettings({
        mongoUri: server.uri,
        database,
        // debug: every failed round of an operation is logged ("database still failing", with a count).
        logLevel: 'debug',
        // Leases shorter than the outage: a claim whose reply was lost with the server (the update was
        // applied, the daemon never saw the jobs) is recovered by lease expiry and rescue after the
        // restart, like any other stranded lease.
        worker: { concurrency: 4, leaseMs: 5_000 },
        jobTypes: { block: { handler: crashFixture('block.mjs'), mode: 'pooled' } },
      });
      dirs.push(s.dir);
      const d = await startDaemonProcess(s);
      client = await JobdClient.connect({ mongoUri: server.uri, database });
      const ids = (
        await client.enqueueMany(Array.from({ length: JOBS }, () => ({ type: 'block', params: { ms: 20 } })))
      ).map((r) => r.job._id);
      // Mid-run: some jobs done, most still to do.
      await d.waitForLog('job completed', { nth: 10 });
      await client.close();
      client = null;

      const crashed = await server.kill();
      expect(crashed.signal).toBe('SIGKILL');
      // The outage is logged once per failing operation, then counted at debug level. Three failed claim
      // rounds (the first fails at once, each later one waits out the driver's 5 s server selection:
      // ~10 s) stand for "the database is away for a while".
      await d.waitForLog((l) => l.msg === 'database error' && l.op === 'claim', { timeoutMs: 30_000 });
      await d.waitForLog(
        (l) => l.msg === 'database still failing' && l.op === 'claim' && Number(l.failures) >= 3,
        {
          timeoutMs: 30_000,
        },
      );
      expect(d.alive).toBe(true);

      const again = await startEmbeddedProcess({ dataDir, port: server.port });
      expect(again.port).toBe(server.port);
      await d.waitForLog((l) => l.msg === 'database recovered' && l.op === 'claim', { timeoutMs: 30_000 });

      client = await JobdClient.connect({ mongoUri: again.uri, database });
      const jobs = client.store.jobs;
      await waitForCount(jobs, { state: 'completed' }, JOBS, {
        timeoutMs: 60_000,
        what: 'every job completed after the outage',
      }).catch(async (err: Error) => {
        // Say which jobs did not finish, and why, instead of only how many.
        const left = await jobs
          .find(
            { state: { $ne: 'completed' } },
            { projection: { state: 1, attempts: 1, runAt: 1, lease: 1, errors: 1 } },
          )
          .limit(5)
          .toArray();
        throw new Error(`${err.message}\nunfinished: ${JSON.stringify(left)}`);
      });
      expect(await jobs.countDocuments({})).toBe(JOBS);
      expect((await jobs.distinct('_id')).sort()).toEqual([...ids].sort());
      // Each job ran in this daemon's children.
      expect(await jobs.countDocuments({ 'result.ppid': d.pid })).toBe(JOBS);
      const rescued = await jobs
        .find({ attempts: { $gt: 1 } }, { projection: { errors: 1, attempts: 1 } })
        .toArray();
      for (const j of rescued) expect(j.errors.map((e) => e.code)).toContain('JOBD_LEASE_EXPIRED');

      expect((await d.stop()).code).toBe(0);
    },
  );
});
