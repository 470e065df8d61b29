/**
 * Schedules with real jobd processes on one database.
 * - Three daemons fire a cron schedule that fires every second, for at least 10 s (one of them is
 *   SIGKILLed halfway): exactly one job per fire time, none missing between the first and the last.
 * - Every daemon down for 5 s, then one comes back: the missed fires follow each schedule's catchUp
 *   policy (skip: none, once: one, all: at most catchUpMax).
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
  type LogLine,
} from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';

interface JobRow {
  _id: string;
  fireKey?: string;
  scheduleId?: string;
  createdAt: Date;
}

function fireTime(fireKey: string): number {
  return Date.parse(fireKey.slice(fireKey.indexOf('@') + 1));
}

describe('schedules across daemon processes', () => {
  let t: TestDb;
  beforeEach(async () => {
    t = await openTestDb('sched_proc');
  });
  afterEach(async () => {
    await killAllDaemons();
    await t.close();
  });

  const jobsOf = (schedule: string): Promise<JobRow[]> =>
    t.db
      .collection<JobRow>('jobs')
      .find({ scheduleId: schedule }, { projection: { fireKey: 1, scheduleId: 1, createdAt: 1 } })
      .toArray();

  it(
    'three daemons, a cron firing every second for 10 s (one daemon SIGKILLed): one job per fire time, none missing',
    { timeout: 180_000 },
    async () => {
      const base = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName });
      const daemons: DaemonProcess[] = [];
      for (let i = 0; i < 3; i++) {
        const s = writeDaemonSettings({
          mongoUri: t.uri,
          database: t.dbName,
          dir: join(base.dir, `d${i}`),
          extra: { schedules: { tick: { cron: '* * * * * *', type: 'noop' } } },
        });
        daemons.push(await startDaemonProcess(s));
      }
      const span = async (min: number): Promise<JobRow[] | undefined> => {
        const jobs = await jobsOf('tick');
        const times = jobs.map((j) => fireTime(j.fireKey!));
        return times.length && Math.max(...times) - Math.min(...times) >= min ? jobs : undefined;
      };
      await waitUntil(() => span(5_000), { timeoutMs: 90_000, intervalMs: 200, what: '5 s of fires' });
      // A crash mid-run: the others carry on; a fire it half-made is completed by another, never doubled.
      const killedAt = Date.now();
      daemons[0]!.signal('SIGKILL');
      await daemons[0]!.exited;
      await waitUntil(() => span(10_000), { timeoutMs: 90_000, intervalMs: 200, what: '10 s of fires' });
      await Promise.all(daemons.slice(1).map((d) => d.stop('SIGTERM')));

      const jobs = await jobsOf('tick');
      const byKey = new Map<string, number>();
      for (const j of jobs) byKey.set(j.fireKey!, (byKey.get(j.fireKey!) ?? 0) + 1);
      expect([...byKey.values()].every((n) => n === 1)).toBe(true);
      expect(jobs.length).toBe(byKey.size);
      const times = [...byKey.keys()].map(fireTime).sort((a, b) => a - b);
      const first = times[0]!;
      const last = times[times.length - 1]!;
      expect(last - first).toBeGreaterThanOrEqual(10_000);
      // Every second between the first and the last fire time has its job.
      const expected = (last - first) / 1000 + 1;
      expect(times).toEqual(Array.from({ length: expected }, (_, i) => first + i * 1000));

      // The fires were shared out: each daemon's log names the jobs it created, once. The killed
      // daemon may have written a job and died before its log line left: only such a job, created
      // before the kill, may be missing from the logs.
      const logged = daemons.flatMap((d) =>
        d
          .lines()
          .filter((l) => l.msg === 'schedule fired')
          .flatMap((l) => (l.jobs as { jobId: string }[]).map((j) => j.jobId)),
      );
      expect(new Set(logged).size).toBe(logged.length);
      const unlogged = jobs.filter((j) => !logged.includes(j._id));
      expect(unlogged.every((j) => j.createdAt.getTime() <= killedAt)).toBe(true);
      expect(unlogged.length).toBeLessThanOrEqual(1);
    },
  );

  it(
    'every daemon down for 5 s: catchUp once makes one catch-up job, skip none, all at most catchUpMax',
    { timeout: 180_000 },
    async () => {
      const schedules = {
        tickSkip: { cron: '* * * * * *', type: 'noop', catchUp: 'skip' },
        tickOnce: { cron: '* * * * * *', type: 'noop' },
        tickAll: { cron: '* * * * * *', type: 'noop', catchUp: 'all', catchUpMax: 2 },
      };
      const s = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName, extra: { schedules } });
      const first = await startDaemonProcess(s);
      await waitUntil(
        async () => (await Promise.all(Object.keys(schedules).map(jobsOf))).every((j) => j.length >= 2),
        { timeoutMs: 60_000, intervalMs: 100, what: 'two fires of each schedule' },
      );
      const exit = await first.stop('SIGTERM');
      expect(exit.code).toBe(0);
      const down = Date.now();
      // The scenario itself: no daemon runs for 5 s (fire times pass with nobody up).
      await new Promise((r) => setTimeout(r, 5_000));
      const second = await startDaemonProcess(s);
      const downMs = Date.now() - down;
      const restartedAt = Date.now();
      // Each schedule fires a fire time after the restart; catch-up jobs come in the pass before that.
      // (A fire that came due while the first daemon was stopping counts as on time: a daemon was up.)
      const firesAfterRestart = (name: string) => (l: LogLine) =>
        l.msg === 'schedule fired' &&
        l.schedule === name &&
        (l.jobs as { fireAt: string }[]).some((j) => Date.parse(j.fireAt) >= restartedAt);
      for (const name of Object.keys(schedules)) {
        await second.waitForLog(firesAfterRestart(name), { timeoutMs: 60_000 });
      }
      await second.stop('SIGTERM');
      const catchUps = (name: string): number =>
        second
          .lines()
          .filter((l) => l.msg === 'schedule fired' && l.schedule === name)
          .flatMap((l) => l.jobs as { catchUp: boolean }[])
          .filter((j) => j.catchUp).length;
      expect(downMs).toBeGreaterThanOrEqual(5_000);
      expect(catchUps('tickSkip')).toBe(0);
      expect(catchUps('tickOnce')).toBe(1);
      expect(catchUps('tickAll')).toBe(2);
      // The store agrees: the catch-up jobs' history says so, and every fire key is unique.
      const events = await t.db
        .collection<{ message: string; jobId: string }>('job_events')
        .find({ message: /catch-up/ })
        .toArray();
      expect(events).toHaveLength(3);
      for (const name of Object.keys(schedules)) {
        const jobs = await jobsOf(name);
        expect(new Set(jobs.map((j) => j.fireKey)).size).toBe(jobs.length);
      }
      // skip leaves a hole of at least 4 fire times where every daemon was down.
      const skipTimes = (await jobsOf('tickSkip')).map((j) => fireTime(j.fireKey!)).sort((a, b) => a - b);
      const gaps = skipTimes.slice(1).map((v, i) => v - skipTimes[i]!);
      expect(Math.max(...gaps)).toBeGreaterThanOrEqual(5_000);
    },
  );
});
