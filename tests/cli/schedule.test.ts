/**
 * `jobctl schedule ...` and schedules in jobd's settings, as subprocesses: the commands, their JSON,
 * and bad input refused with exit code 2 and nothing written.
 */
import { MongoClient, type Db } from 'mongodb';
import { describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { loadConfig } from '../../src/config/load.js';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { inProcessCalls } from './inProcess.js';
import { run, writeSettings, type RunOptions } from './proc.js';

function ctl(label: string) {
  const database = testDbName(label);
  const settings = writeSettings({ dataDir: './var' });
  const call = (args: string[], opts: RunOptions = {}) =>
    run('jobctl', [...args, '--settings', settings, '--mongo-uri', testMongoUri()], {
      ...opts,
      env: { JOBD_DATABASE: database, ...opts.env },
    });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await call([...args, '--json']);
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  // The same calls in this process (inProcess.ts): for variants whose process-level behaviour (exit
  // code, output through a pipe) a real call in this file already checks.
  const { here, hereJson } = inProcessCalls(['--settings', settings, '--mongo-uri', testMongoUri()], {
    env: { JOBD_DATABASE: database },
  });
  return { database, call, json, here, hereJson };
}

async function withDb<T>(database: string, fn: (db: Db) => Promise<T>): Promise<T> {
  const client = new MongoClient(testMongoUri(), { serverSelectionTimeoutMS: 10_000 });
  try {
    await client.connect();
    return await fn(client.db(database));
  } finally {
    await client.close();
  }
}

const count = (database: string, collection: string): Promise<number> =>
  withDb(database, (db) => db.collection(collection).countDocuments());

describe('jobctl schedule', () => {
  it('add, list (next fire time), show, pause, resume, trigger, remove', { timeout: 120_000 }, async () => {
    const c = ctl('sched_flow');
    const added = await c.json<{ _id: string; nextFireAt: string; cron: string; timezone: string }>([
      'schedule',
      'add',
      'nightly',
      '--cron',
      '0 2 * * *',
      '--timezone',
      'Europe/Berlin',
      '--type',
      'echo',
      '--params',
      '{"x":1}',
    ]);
    expect(added).toMatchObject({ _id: 'nightly', cron: '0 2 * * *', timezone: 'Europe/Berlin' });
    // 02:00 in Berlin is 01:00 or 00:00 UTC.
    expect(new Date(added.nextFireAt).getUTCHours()).toBeLessThanOrEqual(1);
    expect(new Date(added.nextFireAt).getTime()).toBeGreaterThan(Date.now());

    const every = await c.call(['schedule', 'add', 'often', '--every', '60000', '--type', 'noop']);
    expect(every.code).toBe(0);
    expect(every.stdout).toMatch(/schedule often added; next fire /);

    // Real processes for add (JSON and human), show and the exit code 3; the rest in-process.
    const list = await c.hereJson<{ _id: string; nextFireAt: string; paused: boolean }[]>([
      'schedule',
      'list',
    ]);
    expect(list.map((s) => s._id)).toEqual(['nightly', 'often']);
    expect(list.every((s) => !Number.isNaN(Date.parse(s.nextFireAt)))).toBe(true);

    expect((await c.hereJson<{ paused: boolean }>(['schedule', 'pause', 'often'])).paused).toBe(true);
    const resumed = await c.hereJson<{ paused: boolean; nextFireAt: string }>([
      'schedule',
      'resume',
      'often',
    ]);
    expect(resumed.paused).toBe(false);
    expect(Date.parse(resumed.nextFireAt)).toBeGreaterThan(Date.now());

    const trig = await c.hereJson<{ jobId: string }>(['schedule', 'trigger', 'nightly']);
    const job = await c.hereJson<{ job: { type: string; params: unknown; scheduleId: string } }>([
      'show',
      trig.jobId,
    ]);
    expect(job.job).toMatchObject({ type: 'echo', params: { x: 1 }, scheduleId: 'nightly' });

    const shown = await c.call(['schedule', 'show', 'nightly']);
    expect(shown.stdout).toMatch(/next fire/);
    expect((await c.here(['schedule', 'add', 'nightly', '--cron', '* * * * *', '--type', 'echo'])).code).toBe(
      2,
    );

    expect((await c.here(['schedule', 'remove', 'often'])).code).toBe(0);
    const gone = await c.call(['schedule', 'show', 'often']);
    expect(gone.code).toBe(3);
    expect(gone.stderr).toContain('schedule "often" not found');
  });

  it.each([
    [['--cron', '61 * * * *'], 'schedule.cron = "61 * * * *" is not allowed: must be a cron expression'],
    [['--cron', 'every day'], 'schedule.cron = "every day" is not allowed'],
    [
      ['--cron', '* * * * *', '--timezone', 'Mars/Olympus'],
      'schedule.timezone = "Mars/Olympus" is not allowed',
    ],
    [['--every', '5'], 'schedule.everyMs = 5 is not allowed: must be an integer from 1000'],
    [[], 'give exactly one of cron'],
  ])('refuses %j with exit 2, naming field and value, writing nothing', async (flags, message) => {
    const c = ctl('sched_bad');
    // The first case as a real process, the others (the same path) in-process.
    const r = await (flags[1] === '61 * * * *' ? c.call : c.here)([
      'schedule',
      'add',
      'bad',
      ...flags,
      '--type',
      'echo',
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(await count(c.database, 'schedules')).toBe(0);
  });

  it('refuses an unknown job type (exit 2) unless --allow-unknown-type', async () => {
    const c = ctl('sched_type');
    const r = await c.call(['schedule', 'add', 'x', '--every', '5000', '--type', 'nosuch']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('job type "nosuch"');
    expect(await count(c.database, 'schedules')).toBe(0);
    const ok = await c.here([
      'schedule',
      'add',
      'x',
      '--every',
      '5000',
      '--type',
      'nosuch',
      '--allow-unknown-type',
    ]);
    expect(ok.code).toBe(0);
  });
});

describe('schedules in jobd settings', () => {
  it('jobd refuses to start (exit 2), nothing written', async () => {
    const database = testDbName('sched_jobd');
    const settings = writeSettings({
      mongoUri: testMongoUri(),
      database,
      dataDir: './var',
      schedules: { nightly: { cron: '0 25 * * *', type: 'echo' } },
    });
    const r = await run('jobd', ['--settings', settings], { timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('settings: schedules.nightly.cron = "0 25 * * *" is not allowed');
    expect(r.stderr).toContain(settings);
    expect(await count(database, 'schedules')).toBe(0);
    expect(await count(database, 'workers')).toBe(0);
  });

  // The same refusal as above (jobd prints the settings loader's message and exits 2 before it touches
  // the database), for other fields: the loader's message, without starting a jobd for each.
  it.each([
    [
      { nightly: { cron: '0 2 * * *', timezone: 'Europe/Nowhere', type: 'echo' } },
      'settings: schedules.nightly.timezone = "Europe/Nowhere" is not allowed: must be an IANA timezone name',
    ],
    [
      { nightly: { everyMs: 5000, type: 'nosuch' } },
      'settings: schedules.nightly.type = "nosuch" is not allowed',
    ],
  ])('the settings loader refuses %j, naming the file', (schedules, message) => {
    const settings = writeSettings({ mongoUri: testMongoUri(), dataDir: './var', schedules });
    const err = (() => {
      try {
        loadConfig({ settingsPath: settings, env: {} });
      } catch (e) {
        return e as Error & { code?: string };
      }
      throw new Error('expected the settings to be refused');
    })();
    expect(err.name).toBe('ConfigError');
    expect(err.message).toContain(message);
    expect(err.message).toContain(settings);
  });
});

describe('the library', () => {
  it('offers what jobctl does, with the same validation', async () => {
    const database = testDbName('sched_lib');
    const client = await JobdClient.connect({ mongoUri: testMongoUri(), database });
    try {
      await expect(client.addSchedule('bad', { cron: '* * * *', type: 'echo' })).rejects.toMatchObject({
        name: 'ValidationError',
        message: expect.stringContaining('schedule.cron = "* * * *" is not allowed'),
      });
      await expect(
        client.addSchedule('bad', { cron: '* * * * *', timezone: 'Nowhere/Land', type: 'echo' }),
      ).rejects.toMatchObject({ name: 'ValidationError' });
      expect(await client.listSchedules()).toEqual([]);
      const s = await client.addSchedule('tick', { everyMs: 2_000, type: 'echo', params: { a: 1 } });
      expect(s.nextFireAt.getTime()).toBeGreaterThan(Date.now());
      expect((await client.pauseSchedule('tick')).paused).toBe(true);
      expect((await client.resumeSchedule('tick')).paused).toBe(false);
      const id = await client.triggerSchedule('tick');
      expect((await client.get(id))?.scheduleId).toBe('tick');
      await client.removeSchedule('tick');
      await expect(client.getSchedule('tick')).rejects.toMatchObject({ name: 'NotFoundError' });
    } finally {
      await client.store.db.dropDatabase();
      await client.close();
    }
  });
});
