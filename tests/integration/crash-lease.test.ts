/**
 * Leases across real processes: a SIGKILLed daemon's jobs are rescued and finished by another daemon,
 * and a daemon frozen (SIGSTOP) past its lease cannot overwrite the job once it wakes up (fencing).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import type { JobDoc } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  crashFixture,
  killAllDaemons,
  pidAlive,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
  type DaemonSettingsOptions,
} from '../helpers/daemonProcess.js';
import { waitForCount, waitForDoc, waitUntil } from '../helpers/waitFor.js';

const LEASE_MS = 2_000;

/** "<jobId> <pid> <ppid> <attempt>" lines written by block.mjs when a run starts. */
function startedRuns(file: string): { jobId: string; pid: number; ppid: number; attempt: number }[] {
  const text = readFileSync(file, 'utf8').trim();
  if (!text) return [];
  return text.split('\n').map((l) => {
    const [jobId, pid, ppid, attempt] = l.split(' ');
    return { jobId: jobId!, pid: Number(pid), ppid: Number(ppid), attempt: Number(attempt) };
  });
}

describe('crash: leases between daemon processes', () => {
  let t: TestDb;
  let client: JobdClient;
  let dir: string;
  beforeEach(async () => {
    t = await openTestDb('crash_lease');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    dir = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName }).dir;
  });
  afterEach(async () => {
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  const settings = (name: string, o: Partial<DaemonSettingsOptions> = {}) =>
    writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      dir: join(dir, name),
      ...o,
      worker: { leaseMs: LEASE_MS, ...o.worker },
      jobTypes: { block: { handler: crashFixture('block.mjs'), mode: 'pooled' } },
    });
  // The rescuing daemon: it rescues A's short leases every half lease period, but takes the jobs over
  // under a long lease of its own, so a starved machine delaying its renewals cannot cost a third
  // attempt (these tests count attempts).
  const rescuer = (name: string, concurrency: number) =>
    settings(name, {
      worker: { concurrency, leaseMs: 15 * LEASE_MS },
      maintenance: { rescueIntervalMs: LEASE_MS / 2 },
    });

  it('SIGKILL a daemon mid-job: another daemon rescues its jobs within two lease periods and completes them', async () => {
    const startedFile = join(dir, 'started.txt');
    writeFileSync(startedFile, '');
    // The jobs run until this file exists, which it does only after A is dead: none finishes on A,
    // however long B takes to start.
    const untilFile = join(dir, 'release');
    const a = await startDaemonProcess(settings('a', { worker: { concurrency: 4 } }));
    const { job: first } = await client.enqueue('block', { untilFile, startedFile });
    const rest = await client.enqueueMany(
      [1, 2, 3].map(() => ({ type: 'block', params: { untilFile, startedFile } })),
    );
    const ids = [first._id, ...rest.map((r) => r.job._id)];
    // All four run in A's children.
    const runsA = await waitUntil(
      () => {
        const runs = startedRuns(startedFile);
        return runs.length === 4 ? runs : undefined;
      },
      { what: 'four jobs started on daemon A' },
    );
    expect(new Set(runsA.map((r) => r.ppid))).toEqual(new Set([a.pid]));

    // B is up before A dies, so the rescue is not delayed by B's start-up.
    const b = await startDaemonProcess(rescuer('b', 4));

    a.signal('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');
    // A can no longer renew: the leases recorded now are the ones that expire.
    const atDeath = new Map<string, JobDoc>();
    for (const doc of await client.store.jobs.find({ _id: { $in: ids } }).toArray())
      atDeath.set(doc._id, doc);
    for (const id of ids) {
      expect(atDeath.get(id)).toMatchObject({ state: 'running', attempts: 1, lease: { owner: a.workerId } });
    }
    writeFileSync(untilFile, '');

    await waitForCount(client.store.jobs, { _id: { $in: ids }, state: 'completed' }, ids.length, {
      what: "the killed daemon's jobs completed by the other daemon",
    });

    for (const id of ids) {
      const doc = (await client.get(id))!;
      expect(doc).toMatchObject({ state: 'completed', attempts: 2, result: { ppid: b.pid, attempt: 2 } });
      // The lost attempt is in the job's error history, naming the dead worker.
      expect(doc.errors).toEqual([
        expect.objectContaining({ code: 'JOBD_LEASE_EXPIRED', worker: a.workerId, attempt: 1 }),
      ]);
      const events = await client.events(id);
      expect(events.map((e) => e.to)).toEqual(['queued', 'running', 'retrying', 'running', 'completed']);
      const rescued = events[2]!;
      expect(rescued.from).toBe('running');
      expect(rescued.worker).toBe(b.workerId);
      expect(rescued.message).toContain(a.workerId);
      expect(events[3]!.worker).toBe(b.workerId);
      // Rescued within two lease periods of the crash: A last renewed at expiresAt - leaseMs (or
      // later), so the rescue must come no later than one lease period after the recorded expiry.
      const expiresAt = atDeath.get(id)!.lease!.expiresAt.getTime();
      expect(rescued.at.getTime()).toBeGreaterThanOrEqual(expiresAt);
      expect(rescued.at.getTime() - expiresAt).toBeLessThanOrEqual(LEASE_MS);
    }
    await b.waitForLog((l) => l.msg === 'rescued jobs with expired leases');

    // A's children did not outlive it.
    await waitUntil(() => runsA.every((r) => !pidAlive(r.pid)), {
      what: "the killed daemon's children to exit",
    });
    expect((await b.stop()).code).toBe(0);
  });

  it('fencing: a daemon frozen past its lease cannot overwrite the job another daemon completed', async () => {
    const startedFile = join(dir, 'started.txt');
    writeFileSync(startedFile, '');
    const a = await startDaemonProcess(settings('a', { worker: { concurrency: 1 } }));
    const { job } = await client.enqueue('block', { ms: 1_500, startedFile });
    await waitUntil(() => startedRuns(startedFile).length === 1, { what: 'the job started on daemon A' });

    // Freeze A while its child runs. The child finishes during the freeze; its result waits in the
    // pipe until A wakes, long after A's lease expired and B took the job over.
    a.signal('SIGSTOP');
    let b: DaemonProcess | undefined;
    try {
      b = await startDaemonProcess(rescuer('b', 1));
      // Completed and released (releasePending is cleared right after the completion lands): from
      // then on nothing legitimate writes the job again.
      const done = await waitForDoc(
        client.store.jobs,
        { _id: job._id, state: 'completed', releasePending: { $exists: false } },
        {
          what: 'the job completed by daemon B and released',
        },
      );
      expect(done).toMatchObject({ attempts: 2, result: { ppid: b.pid, attempt: 2 } });
      expect(startedRuns(startedFile).map((r) => r.ppid)).toEqual([a.pid, b.pid]);
    } finally {
      a.signal('SIGCONT');
    }
    const before = await client.get(job._id);
    const eventsBefore = await client.events(job._id);

    // A notices, kills nothing that matters, and writes nothing.
    // (At its heartbeat, or when its completion is refused: the child had finished.)
    await a.waitForLog(
      (l) =>
        l.jobId === job._id &&
        (l.msg === 'job lease lost; nothing written' ||
          (l.stage === 'settling' && String(l.msg).startsWith('job finished, but its lease was lost'))),
    );
    // Let A's next heartbeat and settle rounds pass: its worker heartbeat is a later write than the
    // lost-lease line, so once it lands every write A had queued for the job was tried.
    const seenAt = new Date();
    await waitForDoc(
      client.store.workers,
      { _id: a.workerId, heartbeatAt: { $gt: seenAt } },
      { what: "daemon A's next heartbeat" },
    );

    expect(await client.get(job._id)).toEqual(before);
    expect(await client.events(job._id)).toEqual(eventsBefore);
    expect(before).toMatchObject({ state: 'completed', result: { ppid: b!.pid } });
    expect(a.lines().filter((l) => l.msg === 'job completed' && l.jobId === job._id)).toEqual([]);
    expect(a.alive).toBe(true);

    const [ea, eb] = await Promise.all([a.stop(), b!.stop()]);
    expect([ea.code, eb.code]).toEqual([0, 0]);
  });
});
