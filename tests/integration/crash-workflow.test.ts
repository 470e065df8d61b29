/**
 * Three jobd daemons in separate processes run a 200-job fan-out/fan-in workflow; one is SIGKILLed
 * mid-run. Every job completes; a job runs twice only when the kill interrupted its first run; no job
 * starts before all of its dependencies completed (checked from job_events).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import type { JobEventDoc } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
} from '../helpers/daemonProcess.js';
import { waitForCount, waitUntil } from '../helpers/waitFor.js';

const FAN = 198; // + the root and the sink: 200 jobs

describe('crash: a workflow across three daemons, one SIGKILLed', () => {
  let t: TestDb;
  let client: JobdClient;
  const daemons: DaemonProcess[] = [];
  beforeEach(async () => {
    t = await openTestDb('crash_workflow');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
  });
  afterEach(async () => {
    await killAllDaemons();
    daemons.length = 0;
    await client.close();
    await t.close();
  });

  it(
    'everything completes, each job runs once unless interrupted, no dependent starts early',
    { timeout: 300_000 },
    async () => {
      const base = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName });
      const runsFile = join(base.dir, 'runs.txt');
      writeFileSync(runsFile, '');
      const jobType = { recordWait: { handler: crashFixture('recordWait.mjs'), mode: 'pooled' as const } };
      for (let i = 0; i < 3; i++) {
        const s = writeDaemonSettings({
          mongoUri: t.uri,
          database: t.dbName,
          dir: join(base.dir, `d${i}`),
          // A lease long enough that a daemon starved of CPU by a busy machine keeps it (a lost lease is a
          // legitimate second run, but not the one this test is about).
          worker: { concurrency: 4, claimBatchSize: 4, leaseMs: 10_000 },
          maintenance: { rescueIntervalMs: 500, releaseIntervalMs: 500 },
          jobTypes: jobType,
        });
        daemons.push(await startDaemonProcess(s));
      }
      const params = (key: string) => ({ file: runsFile, ms: 40, key });
      const { workflow } = await client.submitWorkflow({
        name: 'fan',
        jobs: [
          { key: 'root', type: 'recordWait', params: params('root') },
          ...Array.from({ length: FAN }, (_, i) => ({
            key: `m${i}`,
            type: 'recordWait',
            params: params(`m${i}`),
            dependsOn: ['root'],
          })),
          {
            key: 'sink',
            type: 'recordWait',
            params: params('sink'),
            dependsOn: Array.from({ length: FAN }, (_, i) => `m${i}`),
          },
        ],
      });
      const jobs = client.store.jobs;
      // Mid-run: some of the fan-out done, much left.
      await waitUntil(
        async () => ((await jobs.countDocuments({ state: 'completed' })) >= 40 ? true : undefined),
        {
          timeoutMs: 120_000,
          intervalMs: 20,
          what: '40 completed jobs',
        },
      );
      const victim = daemons[0]!;
      victim.signal('SIGKILL');
      await victim.exited;

      await waitForCount(jobs, { workflowId: workflow._id, state: 'completed' }, FAN + 2, {
        timeoutMs: 240_000,
        what: 'the whole workflow completed',
      });
      await waitUntil(
        async () => ((await client.getWorkflow(workflow._id))?.state === 'completed' ? true : undefined),
        {
          timeoutMs: 30_000,
          what: 'the workflow closed',
        },
      );
      const sink = await client.get(workflow.keys.sink!);
      expect(sink!.result).toMatchObject({ key: 'sink', deps: FAN });

      // Runs: one line each, except jobs whose earlier run was on the killed daemon (or lost its lease).
      const runs = new Map<string, string[]>();
      for (const line of readFileSync(runsFile, 'utf8').trim().split('\n')) {
        const [id, , ppid] = line.split(' ');
        runs.set(id!, [...(runs.get(id!) ?? []), ppid!]);
      }
      expect(runs.size).toBe(FAN + 2);
      for (const [id, ppids] of runs) {
        if (ppids.length === 1) continue;
        const history = (await client.events(id)).map(
          (e) => `${e.from}>${e.to} ${e.worker ?? ''} ${e.message ?? ''}`,
        );
        // An earlier run was on the killed daemon, or on one so starved that its lease expired: the
        // history names that daemon's worker as the one that stopped renewing (a legal second round).
        const expiredOn = (pid: string) => {
          const worker = daemons.find((d) => d.pid === Number(pid))?.workerId;
          return worker !== undefined && history.some((h) => h.includes(`worker ${worker} stopped renewing`));
        };
        expect(
          ppids.slice(0, -1).every((p) => Number(p) === victim.pid || expiredOn(p)),
          `job ${id} ran on daemons ${ppids.join(',')} (killed: ${victim.pid}): ${history.join('; ')}`,
        ).toBe(true);
        expect((await client.get(id))!.attempts).toBe(ppids.length);
      }

      // Order, from the history: each job's last start is after every dependency's completion.
      const events = await client.store.events.find({}).toArray();
      const lastStart = new Map<string, number>();
      const completedAt = new Map<string, number>();
      const starts = new Map<string, JobEventDoc[]>();
      for (const e of events) {
        if (e.to === 'running') {
          lastStart.set(e.jobId, Math.max(lastStart.get(e.jobId) ?? 0, e.at.getTime()));
          starts.set(e.jobId, [...(starts.get(e.jobId) ?? []), e]);
        }
      }
      // Completion times from the job documents: the transition and finishedAt are one write, while
      // its event is a second one, which a writer SIGKILLed in between never makes (a gap the
      // history marks when it is read; docs/state-machine.md).
      const all = await jobs.find({ workflowId: workflow._id }).toArray();
      for (const j of all) if (j.finishedAt) completedAt.set(j._id, j.finishedAt.getTime());
      for (const j of all) {
        const firstStart = Math.min(...(starts.get(j._id) ?? []).map((e) => e.at.getTime()));
        for (const dep of j.dependsOn ?? []) {
          expect(completedAt.get(dep), `${j.workflowKey} after ${dep}`).toBeLessThanOrEqual(firstStart);
        }
      }
    },
  );
});
