import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { Proc, run, tempDir, writeSettings } from './proc.js';

/** jobctl against the harness database: URI by flag, a fresh database by JOBD_DATABASE. */
function ctl(label: string) {
  const database = testDbName(label);
  const settings = writeSettings({ dataDir: './var' });
  const call = (args: string[]) =>
    run('jobctl', [...args, '--settings', settings, '--mongo-uri', testMongoUri()], {
      env: { JOBD_DATABASE: database },
    });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await call([...args, '--json']);
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  return { database, settings, call, json };
}

describe('jobctl against the harness database', () => {
  it('enqueue, show, list, cancel, retry, status', async () => {
    const c = ctl('ctl_flow');
    const enq = await c.call([
      'enqueue',
      'echo',
      '--params',
      '{"hello":"world"}',
      '--priority',
      '2',
      '--delay',
      '3600000',
    ]);
    expect(enq.stderr).toBe('');
    expect(enq.code).toBe(0);
    const id = enq.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{24}$/);

    const shown = await c.json<{ job: Record<string, unknown>; events: Record<string, unknown>[] }>([
      'show',
      id,
    ]);
    expect(shown.job).toMatchObject({
      _id: id,
      type: 'echo',
      state: 'queued',
      priority: 2,
      params: { hello: 'world' },
    });
    expect(shown.events).toMatchObject([{ from: null, to: 'queued', message: 'enqueued' }]);
    const human = await c.call(['show', id]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(id);
    expect(human.stdout).toContain('events');

    const second = await c.json<{ id: string }>([
      'enqueue',
      'sleep',
      '--params',
      '{"ms":1}',
      '--delay',
      '3600000',
    ]);
    const listed = await c.json<{ _id: string }[]>(['list']);
    expect(listed.map((j) => j._id)).toEqual([second.id, id]); // newest first
    expect((await c.json<{ _id: string }[]>(['list', '--type', 'echo'])).map((j) => j._id)).toEqual([id]);
    expect(await c.json<unknown[]>(['list', '--state', 'completed'])).toEqual([]);
    expect((await c.json<unknown[]>(['list', '--limit', '1'])).length).toBe(1);

    const cancelled = await c.json(['cancel', id]);
    expect(cancelled).toMatchObject({ id, state: 'cancelled' });
    const again = await c.call(['cancel', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(id);

    expect(await c.json(['retry', id])).toMatchObject({ id, state: 'queued' });

    const status = await c.json<{ jobs: Record<string, number>; total: number }>(['status']);
    expect(status.jobs.queued).toBe(2);
    expect(status.total).toBe(2);

    const stats = await c.json<{ types: { type: string; total: number }[] }>(['stats']);
    expect(stats.types.map((t) => [t.type, t.total])).toEqual([
      ['echo', 1],
      ['sleep', 1],
    ]);
    expect(await c.json<unknown[]>(['workers'])).toEqual([]);

    const history = await c.json<{ events: { to: string }[] }>(['show', id]);
    expect(history.events.map((e) => e.to)).toEqual(['queued', 'cancelled', 'queued']);
  });

  it('enqueue with a dedupe key returns the unfinished job', async () => {
    const c = ctl('ctl_dedupe');
    const a = await c.json<{ id: string; created: boolean }>([
      'enqueue',
      'echo',
      '--dedupe-key',
      'k1',
      '--delay',
      '60000',
    ]);
    const b = await c.json<{ id: string; created: boolean }>([
      'enqueue',
      'echo',
      '--dedupe-key',
      'k1',
      '--delay',
      '60000',
    ]);
    expect(a.created).toBe(true);
    expect(b).toMatchObject({ id: a.id, created: false });
  });

  it('a missing job: show, cancel, retry and logs exit 3', async () => {
    const c = ctl('ctl_missing');
    for (const cmd of ['show', 'cancel', 'retry', 'logs']) {
      const r = await c.call([cmd, '0123456789abcdef01234567']);
      expect(r.code, `${cmd}: ${r.stderr}`).toBe(3);
      expect(r.stderr).toContain('job 0123456789abcdef01234567 not found');
    }
  });

  it('bad arguments exit 2 and name the flag and the value', async () => {
    const c = ctl('ctl_args');
    const params = await c.call(['enqueue', 'echo', '--params', '{not json']);
    expect(params.code).toBe(2);
    expect(params.stderr).toContain("option '--params <json>' argument '{not json' is invalid");
    expect(params.stderr).toContain('not valid JSON');

    const prio = await c.call(['enqueue', 'echo', '--priority', 'high']);
    expect(prio.code).toBe(2);
    expect(prio.stderr).toContain("'--priority <n>' argument 'high' is invalid");

    const runAt = await c.call(['enqueue', 'echo', '--run-at', 'tomorrow']);
    expect(runAt.code).toBe(2);
    expect(runAt.stderr).toContain("'--run-at <iso>' argument 'tomorrow' is invalid");

    const both = await c.call(['enqueue', 'echo', '--delay', '5', '--run-at', '2030-01-01T00:00:00Z']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--delay and --run-at cannot be used together');

    const state = await c.call(['list', '--state', 'done']);
    expect(state.code).toBe(2);
    expect(state.stderr).toContain('"done" is not a job state');

    const unknown = await c.call(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");

    const missingArg = await c.call(['show']);
    expect(missingArg.code).toBe(2);
    expect(missingArg.stderr).toContain("missing required argument 'id'");
  });

  it('ping and version', async () => {
    const c = ctl('ctl_ping');
    const ping = await c.json<{ ok: boolean; backend: string; roundTripMs: number; database: string }>([
      'ping',
    ]);
    expect(ping).toMatchObject({ ok: true, backend: 'mongodb', database: c.database });
    expect(ping.roundTripMs).toBeGreaterThanOrEqual(0);
    const version = await run('jobctl', ['version', '--json']);
    expect(version.code).toBe(0);
    expect(JSON.parse(version.stdout)).toMatchObject({ jobctl: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });
});

describe('jobctl with a running jobd', () => {
  it('enqueue --wait exits 0 when the job completes and 1 when it fails; logs and workers', async () => {
    const database = testDbName('ctl_wait');
    const folder = tempDir('wait');
    const settings = writeSettings(
      { mongoUri: testMongoUri(), dataDir: './var', worker: { concurrency: 2 } },
      folder,
    );
    const env = { JOBD_DATABASE: database };
    const daemon = new Proc('jobd', ['--settings', settings], { env });
    try {
      await daemon.waitForLine('"msg":"jobd started"');
      const ok = await run(
        'jobctl',
        ['enqueue', 'echo', '--params', '{"n":42}', '--wait', '--json', '--settings', settings],
        {
          env,
        },
      );
      expect(ok.stderr).toBe('');
      expect(ok.code).toBe(0);
      const done = JSON.parse(ok.stdout) as { id: string; state: string; result: unknown };
      expect(done).toMatchObject({ state: 'completed', result: { n: 42 } });

      const bad = await run(
        'jobctl',
        [
          'enqueue',
          'fail',
          '--params',
          '{"message":"nope","doNotRetry":true}',
          '--wait',
          '--settings',
          settings,
        ],
        { env },
      );
      expect(bad.code).toBe(1);
      expect(bad.stdout).toContain('failed');
      expect(bad.stdout).toContain('nope');

      const logs = await run('jobctl', ['logs', done.id, '--settings', settings], { env });
      expect(logs.code).toBe(0);

      const workers = await run('jobctl', ['workers', '--json', '--settings', settings], { env });
      expect(workers.code).toBe(0);
      const list = JSON.parse(workers.stdout) as { pid: number; status: string }[];
      expect(list).toMatchObject([{ pid: daemon.pid, status: 'alive' }]);
    } finally {
      const exit = await daemon.stop();
      expect(exit.code).toBe(0);
    }
  });
});
