/**
 * Retention through the schedules: two jobd processes with the same retention settings on one
 * database. Each pass is one `jobd.retention` job (one per fire time, whichever daemon claims it), the
 * old finished jobs go, and recent ones, unfinished ones and other states stay. A daemon started with
 * retention off removes the schedule.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { killAllDaemons, startDaemonProcess, writeDaemonSettings } from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';

interface Row {
  _id: string;
  type: string;
  state: string;
  fireKey?: string;
  result?: { jobs: number };
  lease?: { owner: string } | null;
}

const HOUR = 3_600_000;

describe('retention as a scheduled job', () => {
  let t: TestDb;
  beforeEach(async () => {
    t = await openTestDb('retention_proc');
  });
  afterEach(async () => {
    await killAllDaemons();
    await t.close();
  });

  it(
    'two daemons: one job per pass, old finished jobs deleted, the rest kept; retention off removes the schedule',
    {
      timeout: 180_000,
    },
    async () => {
      const jobs = t.db.collection<Row & Record<string, unknown>>('jobs');
      const now = Date.now();
      const doc = (id: string, state: string, ageMs: number, type = 'noop') => {
        const at = new Date(now - ageMs);
        return {
          _id: id,
          type,
          params: null,
          state,
          priority: 5,
          runAt: at,
          attempts: state === 'queued' ? 0 : 1,
          maxAttempts: 3,
          seq: 2,
          createdAt: at,
          updatedAt: at,
          ...(state === 'queued' ? {} : { finishedAt: at }),
        };
      };
      const old = [
        ...Array.from({ length: 30 }, (_, i) => doc(`old-completed-${i}`, 'completed', 2 * HOUR)),
        ...Array.from({ length: 10 }, (_, i) => doc(`old-failed-${i}`, 'failed', 2 * HOUR)),
      ];
      const kept = [
        doc('recent-completed', 'completed', 60_000),
        // No retention age for cancelled jobs: kept however old.
        doc('old-cancelled', 'cancelled', 2 * HOUR),
        // A type no daemon runs: it stays queued, and unfinished jobs are never deleted.
        doc('queued', 'queued', 2 * HOUR, 'nobody-runs-this'),
      ];
      await jobs.insertMany([...old, ...kept] as never[]);

      const base = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName });
      const retention = { completed: '1h', failed: '1h', intervalMs: 1_000 };
      const daemons = [];
      for (let i = 0; i < 2; i++) {
        const s = writeDaemonSettings({
          mongoUri: t.uri,
          database: t.dbName,
          dir: join(base.dir, `d${i}`),
          extra: { retention },
        });
        daemons.push(await startDaemonProcess(s));
      }
      const passes = (): Promise<Row[]> => jobs.find({ type: 'jobd.retention' }).toArray() as Promise<Row[]>;
      await waitUntil(
        async () => (await passes()).filter((p) => p.state === 'completed').length >= 3 || undefined,
        { timeoutMs: 90_000, intervalMs: 200, what: 'three retention passes completed' },
      );
      await Promise.all(daemons.map((d) => d.stop('SIGTERM')));

      const all = await passes();
      const keys = all.map((p) => p.fireKey);
      expect(new Set(keys).size).toBe(all.length);
      expect(keys.every((k) => typeof k === 'string' && k.startsWith('jobd.retention@'))).toBe(true);
      const done = all.filter((p) => p.state === 'completed');
      // Every old job deleted once, by some pass; the passes' counts add up to exactly that.
      expect(done.reduce((n, p) => n + p.result!.jobs, 0)).toBe(old.length);
      expect(await jobs.countDocuments({ _id: { $in: old.map((o) => o._id) } })).toBe(0);
      expect(
        (await jobs.find({ _id: { $in: kept.map((k) => k._id) } }).toArray()).map((j) => j._id).sort(),
      ).toEqual(kept.map((k) => k._id).sort());
      const schedule = await t.db.collection('schedules').findOne({ _id: 'jobd.retention' as never });
      expect(schedule).toMatchObject({
        everyMs: 1_000,
        params: { completed: HOUR, failed: HOUR },
        catchUp: 'skip',
      });

      // Retention turned off: the next daemon removes the schedule, so no more passes are fired.
      const off = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName, dir: join(base.dir, 'off') });
      const d = await startDaemonProcess(off);
      await d.waitForLog('retention is off in the settings: its schedule is removed');
      expect(await t.db.collection('schedules').countDocuments({ _id: 'jobd.retention' as never })).toBe(0);
      expect((await d.stop('SIGTERM')).code).toBe(0);
    },
  );
});
