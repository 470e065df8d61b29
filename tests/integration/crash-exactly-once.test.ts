/**
 * Four jobd daemons in separate processes share one database and 2,000 jobs. Each run of the handler
 * appends "<jobId> <pid> <daemon pid>" to one file with O_APPEND, so a job run twice shows up as two
 * lines, whichever daemons ran it; the database must agree (one claim per job, attempts 1).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
} from '../helpers/daemonProcess.js';
import { waitForCount } from '../helpers/waitFor.js';

const JOBS = 2_000;
const DAEMONS = 4;

describe('crash: many daemons, one database', () => {
  let t: TestDb;
  let client: JobdClient;
  const daemons: DaemonProcess[] = [];
  beforeEach(async () => {
    t = await openTestDb('crash_once');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
  });
  afterEach(async () => {
    await killAllDaemons();
    daemons.length = 0;
    await client.close();
    await t.close();
  });

  // Generous bounds: on a machine busy with other work, 2000 jobs through four daemons can take minutes.
  it(
    `${DAEMONS} daemons run ${JOBS} jobs: each exactly once, all complete, none lost`,
    { timeout: 300_000 },
    async () => {
      const base = writeDaemonSettings({
        mongoUri: t.uri,
        database: t.dbName,
        jobTypes: { record: { handler: crashFixture('record.mjs'), mode: 'pooled' } },
      });
      const runsFile = join(base.dir, 'runs.txt');
      writeFileSync(runsFile, '');
      for (let i = 0; i < DAEMONS; i++) {
        const s = writeDaemonSettings({
          ...{ mongoUri: t.uri, database: t.dbName },
          dir: join(base.dir, `d${i}`),
          // This test is about claim exclusivity, not rescue: a lease long enough that a daemon starved
          // of CPU by a busy machine never loses one (that would be a legitimate second run).
          worker: { concurrency: 8, claimBatchSize: 16, leaseMs: 30_000, heartbeatMs: 2_000 },
          jobTypes: { record: { handler: crashFixture('record.mjs'), mode: 'pooled' } },
        });
        daemons.push(await startDaemonProcess(s));
      }

      const results = await client.enqueueMany(
        Array.from({ length: JOBS }, (_, i) => ({ type: 'record', params: { file: runsFile, i } })),
      );
      const ids = results.map((r) => r.job._id);
      expect(new Set(ids).size).toBe(JOBS);

      const jobs = client.store.jobs;
      await waitForCount(jobs, { state: 'completed' }, JOBS, {
        timeoutMs: 240_000,
        what: `${JOBS} completed jobs`,
      });

      // Nothing else is left over in any other state.
      expect(await jobs.countDocuments({})).toBe(JOBS);
      expect(await jobs.countDocuments({ attempts: { $ne: 1 } })).toBe(0);

      // The handler's own record: one line per job, every job present.
      const lines = readFileSync(runsFile, 'utf8').trim().split('\n');
      const runs = lines.map((l) => {
        const [jobId, pid, ppid] = l.split(' ');
        return { jobId: jobId!, pid: Number(pid), ppid: Number(ppid) };
      });
      const perJob = new Map<string, number>();
      for (const r of runs) perJob.set(r.jobId, (perJob.get(r.jobId) ?? 0) + 1);
      const twice = [...perJob].filter(([, n]) => n > 1);
      expect(twice).toEqual([]);
      expect(runs.length).toBe(JOBS);
      expect([...perJob.keys()].sort()).toEqual([...ids].sort());

      // Each result names the daemon that ran the job, and matches the line the handler wrote.
      const daemonPids = new Set(daemons.map((d) => d.pid));
      const byJob = new Map(runs.map((r) => [r.jobId, r]));
      const docs = await jobs.find({}, { projection: { _id: 1, result: 1, lease: 1 } }).toArray();
      for (const doc of docs) {
        const result = doc.result as { pid: number; ppid: number };
        expect(daemonPids.has(result.ppid)).toBe(true);
        expect(byJob.get(doc._id)).toEqual({ jobId: doc._id, pid: result.pid, ppid: result.ppid });
      }
      // The work was shared: more than one daemon ran jobs.
      expect(new Set(runs.map((r) => r.ppid)).size).toBeGreaterThan(1);

      // History: exactly one claim (→ running) and one completion per job.
      const claims = await client.store.events
        .aggregate<{ _id: string; n: number }>([
          { $match: { to: 'running' } },
          { $group: { _id: '$jobId', n: { $sum: 1 } } },
          { $match: { n: { $ne: 1 } } },
        ])
        .toArray();
      expect(claims).toEqual([]);
      expect(await client.store.events.countDocuments({ to: 'running' })).toBe(JOBS);
      expect(await client.store.events.countDocuments({ to: 'completed' })).toBe(JOBS);

      // All four still run and stop cleanly.
      const exits = await Promise.all(daemons.map((d) => d.stop('SIGTERM')));
      expect(exits.map((e) => e.code)).toEqual(daemons.map(() => 0));
    },
  );
});
