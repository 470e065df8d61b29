/**
 * A job's history after a crash: every transition is numbered, so an event its writer never recorded
 * is a visible gap. The rescuer writes the missing events of the jobs it rescues (marked recovered);
 * any other gap is shown, marked and explained, where the history is read. Real processes, SIGKILL.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { eventsOf } from '../../src/store/index.js';
import { NOT_RECORDED, RECOVERED_BY_RESCUER } from '../../src/store/events.js';
import type { JobDoc, JobEventDoc } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonSettings,
} from '../helpers/daemonProcess.js';
import { waitForCount, waitForDoc, waitUntil } from '../helpers/waitFor.js';

/**
 * The transition numbers an event stands for: its own, or for a marker of a run of missing ones
 * ("N transitions not recorded...", two kills cutting off two transitions in a row), the N from its own.
 */
function numbersOf(e: JobEventDoc): number[] {
  const run = e.recovered ? /^(\d+) transitions /.exec(e.message ?? '') : null;
  const n = run ? Number(run[1]) : 1;
  return Array.from({ length: n }, (_, i) => e.seq! + i);
}

/** A history is a chain numbered 1..job.seq, from nothing to the job's state. */
function expectChain(job: JobDoc, events: JobEventDoc[]): void {
  // On a failure the message carries the job and its history, so a rare gap can be explained.
  const story = JSON.stringify({ job, events });
  expect(events.flatMap(numbersOf), story).toEqual(Array.from({ length: job.seq! }, (_, i) => i + 1));
  events.forEach((e, i) => expect(e.from).toBe(i === 0 ? null : events[i - 1]!.to));
  expect(events[events.length - 1]!.to).toBe(job.state);
}

describe('crash: event history', () => {
  let t: TestDb;
  let client: JobdClient;
  let dir: string;
  beforeEach(async () => {
    t = await openTestDb('crash_history');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    dir = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName }).dir;
  });
  afterEach(async () => {
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  const settings = (name: string, o: { leaseMs?: number } = {}): DaemonSettings =>
    writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      dir: join(dir, name),
      worker: { leaseMs: o.leaseMs ?? 2_000 },
      jobTypes: { block: { handler: crashFixture('block.mjs'), mode: 'pooled' } },
    });

  /** The database refuses history events matching `filter` (a validator), as if they were lost. */
  const refuseEvents = (filter: Record<string, unknown>) =>
    t.db.command({ collMod: 'job_events', validator: { $nor: [filter] } });

  it('a claim event lost when its daemon dies: the rescuer writes it, marked, and the history is whole', async () => {
    await refuseEvents({ to: 'running' });
    const startedFile = join(dir, 'started.txt');
    const untilFile = join(dir, 'release');
    writeFileSync(startedFile, '');
    const a = await startDaemonProcess(settings('a'));
    const { job } = await client.enqueue('block', { startedFile, untilFile });
    await waitForDoc(client.store.jobs, { _id: job._id, state: 'running' }, { what: 'the job claimed by A' });
    await a.waitForLog((l) => l.msg.startsWith('the database refused history events'));
    a.signal('SIGKILL');
    await a.exited;
    await refuseEvents({ never: true });
    writeFileSync(untilFile, '');

    await startDaemonProcess(settings('b'));
    const done = await waitForDoc(
      client.store.jobs,
      { _id: job._id, state: 'completed' },
      { what: 'the job completed by B' },
    );
    // B writes the completion's event just after the transition: wait for it, or a slow machine reads
    // the history in between and (rightly) shows that event as not recorded.
    await waitForDoc(client.store.events, { _id: `${job._id}:${done.seq}` } as never, {
      what: "the completion's event",
    });
    const history = await eventsOf(client.store, job._id, { graceMs: 0 });
    expect(history.map((e) => e.to)).toEqual(['queued', 'running', 'retrying', 'running', 'completed']);
    expectChain(done, history);
    // The claim A never recorded was written by the rescuer, naming A and marked as recovered.
    const stored = await client.store.events.findOne({ _id: `${job._id}:2` } as never);
    expect(stored).toMatchObject({
      from: 'queued',
      to: 'running',
      attempt: 1,
      worker: a.workerId,
      recovered: true,
    });
    expect(stored!.message).toBe(RECOVERED_BY_RESCUER);
    expect(history.filter((e) => e.recovered).map((e) => e.seq)).toEqual([2]);
  });

  it('a completion event lost when its daemon dies: the history shows the gap, marked and explained', async () => {
    await refuseEvents({ to: 'completed' });
    const a = await startDaemonProcess(settings('a'));
    const { job } = await client.enqueue('block', { ms: 1 });
    const done = await waitForDoc(
      client.store.jobs,
      { _id: job._id, state: 'completed' },
      { what: 'the job completed' },
    );
    await a.waitForLog((l) => l.msg.startsWith('the database refused history events'));
    a.signal('SIGKILL');
    await a.exited;
    await refuseEvents({ never: true });
    expect(await client.store.events.countDocuments({ jobId: job._id })).toBe(2);

    const history = await eventsOf(client.store, job._id, { graceMs: 0 });
    expectChain(done, history);
    expect(history[2]).toMatchObject({
      from: 'running',
      to: 'completed',
      attempt: 1,
      recovered: true,
      message: NOT_RECORDED,
    });
    expect(history[2]!.at).toEqual(done.updatedAt);
  });

  it(
    'SIGKILLs in the middle of a busy run: every job history is a whole numbered chain',
    { timeout: 300_000 },
    async () => {
      const JOBS = 200;
      const s = settings('busy', { leaseMs: 2_000 });
      const ids = (
        await client.enqueueMany(Array.from({ length: JOBS }, () => ({ type: 'block', params: { ms: 1 } })))
      ).map((r) => r.job._id);
      // Three daemons in turn, each killed once it has settled some jobs; the last one finishes.
      for (let round = 0; round < 3; round++) {
        const d = await startDaemonProcess(s);
        const before = await client.store.jobs.countDocuments({ state: 'completed' });
        if (before >= JOBS) break;
        await waitUntil(
          async () =>
            (await client.store.jobs.countDocuments({ state: 'completed' })) >= Math.min(JOBS, before + 40),
          { what: 'some jobs completed in this round', timeoutMs: 60_000 },
        );
        d.signal('SIGKILL');
        await d.exited;
      }
      await startDaemonProcess(s);
      await waitForCount(client.store.jobs, { _id: { $in: ids }, state: 'completed' }, JOBS, {
        what: 'every job completed',
        timeoutMs: 120_000,
      });
      let recovered = 0;
      for (const job of await client.store.jobs.find({ _id: { $in: ids } }).toArray()) {
        const history = await eventsOf(client.store, job._id, { graceMs: 0 });
        expectChain(job, history);
        recovered += history.filter((e) => e.recovered).length;
      }
      // How many transitions the kills cut off before their events varies from run to run.
      console.log(`[crash-history] ${recovered} recovered events over ${JOBS} jobs`);
    },
  );
});
