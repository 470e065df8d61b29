import { MongoClient, type Db } from 'mongodb';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { buildProgram, COMMAND_NAMES } from '../../src/cli/jobctl.js';
import { BIN, Proc, run, tempDir, writeSettings, type RunOptions } from './proc.js';
import { inProcessCalls, runInProcess } from './inProcess.js';
import { BUILTIN_JOB_TYPES } from '../../src/jobs/registry.js';

/** jobctl against the harness database: URI by flag, a fresh database by JOBD_DATABASE. */
function ctl(label: string) {
  const database = testDbName(label);
  const settings = writeSettings({ dataDir: './var' });
  const call = (args: string[], opts: RunOptions = {}) =>
    run('jobctl', [...args, '--settings', settings, '--mongo-uri', testMongoUri()], {
      ...opts,
      env: { JOBD_DATABASE: database, ...opts.env },
    });
  const json = async <T = Record<string, unknown>>(args: string[], opts: RunOptions = {}): Promise<T> => {
    const r = await call([...args, '--json'], opts);
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  // The same calls in this process (inProcess.ts): for variants whose process-level behaviour (exit
  // code, output through a pipe) a real call above already checks.
  const { here, hereJson } = inProcessCalls(['--settings', settings, '--mongo-uri', testMongoUri()], {
    env: { JOBD_DATABASE: database },
  });
  return { database, settings, call, json, here, hereJson };
}

/** The test's database, directly (to look at what jobctl wrote, or to register a remote daemon). */
async function withDb<T>(database: string, fn: (db: Db) => Promise<T>): Promise<T> {
  const client = new MongoClient(testMongoUri(), { serverSelectionTimeoutMS: 10_000 });
  try {
    await client.connect();
    return await fn(client.db(database));
  } finally {
    await client.close();
  }
}

/** A worker document as a daemon on another host writes it (with the job types it runs). */
function remoteWorker(id: string, types: string[], heartbeatAt: Date) {
  return {
    _id: id,
    host: 'other-host',
    pid: 4242,
    version: '0.1.0',
    startedAt: new Date(heartbeatAt.getTime() - 60_000),
    heartbeatAt,
    concurrency: 2,
    running: [] as string[],
    state: 'running' as const,
    types,
  };
}

describe('jobctl against the harness database', { timeout: 180_000 }, () => {
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

    // Real processes above and for the exit code 1 below; the rest of this state is read in-process.
    const second = await c.hereJson<{ id: string }>([
      'enqueue',
      'sleep',
      '--params',
      '{"ms":1}',
      '--delay',
      '3600000',
    ]);
    const listed = await c.hereJson<{ _id: string }[]>(['list']);
    expect(listed.map((j) => j._id)).toEqual([second.id, id]); // newest first
    expect((await c.hereJson<{ _id: string }[]>(['list', '--type', 'echo'])).map((j) => j._id)).toEqual([id]);
    expect(await c.hereJson<unknown[]>(['list', '--state', 'completed'])).toEqual([]);
    expect((await c.hereJson<unknown[]>(['list', '--limit', '1'])).length).toBe(1);

    const cancelled = await c.hereJson(['cancel', id]);
    expect(cancelled).toMatchObject({ id, state: 'cancelled' });
    const again = await c.call(['cancel', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(id);

    expect(await c.hereJson(['retry', id])).toMatchObject({ id, state: 'queued' });

    const status = await c.hereJson<{ jobs: Record<string, number>; total: number }>(['status']);
    expect(status.jobs.queued).toBe(2);
    expect(status.total).toBe(2);

    const stats = await c.hereJson<{ types: { type: string; total: number }[] }>(['stats']);
    expect(stats.types.map((t) => [t.type, t.total])).toEqual([
      ['echo', 1],
      ['sleep', 1],
    ]);
    expect(await c.hereJson<unknown[]>(['workers'])).toEqual([]);

    const history = await c.hereJson<{ events: { to: string }[] }>(['show', id]);
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
    const b = await c.hereJson<{ id: string; created: boolean }>([
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
    // show as a real process (the exit code as the process reports it); the others in-process.
    for (const cmd of ['show', 'cancel', 'retry', 'logs']) {
      const r = await (cmd === 'show' ? c.call : c.here)([cmd, '0123456789abcdef01234567']);
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

    // The parse errors of one command's options: the first real, the others in-process.
    const prio = await c.here(['enqueue', 'echo', '--priority', 'high']);
    expect(prio.code).toBe(2);
    expect(prio.stderr).toContain("'--priority <n>' argument 'high' is invalid");

    const runAt = await c.here(['enqueue', 'echo', '--run-at', 'tomorrow']);
    expect(runAt.code).toBe(2);
    expect(runAt.stderr).toContain("'--run-at <iso>' argument 'tomorrow' is invalid");

    const both = await c.here(['enqueue', 'echo', '--delay', '5', '--run-at', '2030-01-01T00:00:00Z']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--delay and --run-at cannot be used together');

    const state = await c.here(['list', '--state', 'done']);
    expect(state.code).toBe(2);
    expect(state.stderr).toContain('"done" is not a job state');

    const unknown = await c.call(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");

    const missingArg = await c.here(['show']);
    expect(missingArg.code).toBe(2);
    expect(missingArg.stderr).toContain("missing required argument 'id'");
  });

  it('ping and version', async () => {
    const c = ctl('ctl_ping');
    const ping = await c.hereJson<{ ok: boolean; backend: string; roundTripMs: number; database: string }>([
      'ping',
    ]);
    expect(ping).toMatchObject({ ok: true, backend: 'mongodb', database: c.database });
    expect(ping.roundTripMs).toBeGreaterThanOrEqual(0);
    const version = await run('jobctl', ['version', '--json']);
    expect(version.code).toBe(0);
    expect(JSON.parse(version.stdout)).toMatchObject({ jobctl: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });
});

describe('jobctl enqueue: params from files, bulk files, checked types', { timeout: 180_000 }, () => {
  it('--params @file.json and @- (stdin)', async () => {
    const c = ctl('ctl_pfile');
    const folder = tempDir('params');
    const file = join(folder, 'params.json');
    writeFileSync(file, '{"from":"file","n":[1,2]}\n');
    const a = await c.hereJson<{ id: string }>([
      'enqueue',
      'echo',
      '--params',
      `@${file}`,
      '--delay',
      '60000',
    ]);
    const b = await c.json<{ id: string }>(['enqueue', 'echo', '--params', '@-', '--delay', '60000'], {
      input: '{"from":"stdin"}',
    });
    const shown = async (id: string) =>
      (await c.hereJson<{ job: { params: unknown } }>(['show', id])).job.params;
    expect(await shown(a.id)).toEqual({ from: 'file', n: [1, 2] });
    expect(await shown(b.id)).toEqual({ from: 'stdin' });

    const missing = await c.here(['enqueue', 'echo', '--params', '@/nonexistent/params.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("'--params <json>' argument '@/nonexistent/params.json' is invalid");
    expect(missing.stderr).toContain('no such file');
    writeFileSync(file, '[1,2]');
    const notObject = await c.here(['enqueue', 'echo', '--params', `@${file}`]);
    expect(notObject.code).toBe(2);
    expect(notObject.stderr).toContain(
      `the params file ${file} must be a JSON object ({ ... }); got an array`,
    );
    const badStdin = await c.call(['enqueue', 'echo', '--params', '@-'], { input: '"str"' });
    expect(badStdin.code).toBe(2);
    expect(badStdin.stderr).toContain(
      "'--params <json>' argument '@-' is invalid. stdin must be a JSON object",
    );
    expect(await c.hereJson<unknown[]>(['list'])).toHaveLength(2);
  });

  it('non-object params are refused, naming --params and the value', async () => {
    const c = ctl('ctl_pobj');
    for (const [value, kind] of [
      ['[1,2]', 'an array'],
      ['"str"', 'a string'],
      ['3', 'a number'],
      ['null', 'null'],
      ['true', 'a boolean'],
    ]) {
      // The first as a real process, the other kinds in-process.
      const r = await (value === '[1,2]' ? c.call : c.here)(['enqueue', 'echo', '--params', value!]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`option '--params <json>' argument '${value}' is invalid`);
      expect(r.stderr).toContain(`must be a JSON object ({ ... }); got ${kind}`);
    }
    expect(await c.hereJson<unknown[]>(['list'])).toEqual([]);
    // Without --params a job gets an empty object, not null.
    const { id } = await c.hereJson<{ id: string }>(['enqueue', 'noop', '--delay', '60000']);
    expect((await c.hereJson<{ job: { params: unknown } }>(['show', id])).job.params).toEqual({});
  });

  it('--file jobs.ndjson: every line checked first, written in batches, ids in line order', async () => {
    const c = ctl('ctl_bulk');
    const folder = tempDir('bulk');
    const file = join(folder, 'jobs.ndjson');
    const lines = [
      { type: 'echo', params: { n: 1 }, priority: 2, tags: ['batch-7'], delayMs: 60_000 },
      { type: 'sleep', params: { ms: 1 }, runAt: '2099-01-01T00:00:00Z', dedupeKey: 'k-1' },
      { type: 'noop', datasetUuid: '123E4567-E89B-12D3-A456-426614174000', maxAttempts: 7, timeoutMs: 5000 },
    ];
    // 2,500 more: more than two batches of 1,000.
    const many = Array.from({ length: 2_500 }, (_, i) => ({ type: 'echo', params: { i }, delayMs: 60_000 }));
    writeFileSync(file, [...lines, ...many].map((l) => JSON.stringify(l)).join('\n') + '\n\n');
    // In-process (a big --json output through a real pipe: the next test; stdin: below).
    const out = await c.hereJson<{ line: number; id: string; created: boolean; state: string }[]>([
      'enqueue',
      '--file',
      file,
    ]);
    expect(out).toHaveLength(2_503);
    expect(out.map((r) => r.line)).toEqual(Array.from({ length: 2_503 }, (_, i) => i + 1));
    expect(out.every((r) => r.created && r.state === 'queued')).toBe(true);
    await withDb(c.database, async (db) => {
      const jobs = db.collection<{ _id: string; [k: string]: unknown }>('jobs');
      expect(await jobs.countDocuments()).toBe(2_503);
      expect(await jobs.findOne({ _id: out[0]!.id })).toMatchObject({
        type: 'echo',
        params: { n: 1 },
        priority: 2,
        tags: ['batch-7'],
      });
      expect(await jobs.findOne({ _id: out[1]!.id })).toMatchObject({
        type: 'sleep',
        runAt: new Date('2099-01-01T00:00:00Z'),
        dedupeKey: 'k-1',
      });
      expect(await jobs.findOne({ _id: out[2]!.id })).toMatchObject({
        type: 'noop',
        params: {},
        datasetUuid: '123e4567-e89b-12d3-a456-426614174000',
        maxAttempts: 7,
        timeoutMs: 5000,
      });
      expect(await jobs.findOne({ _id: out[2_502]!.id })).toMatchObject({ params: { i: 2_499 } });
    });

    // From stdin, human output: one id per line; a dedupe key already held returns that job.
    const again = await c.call(['enqueue', '--file', '-'], {
      input: `${JSON.stringify({ type: 'sleep', dedupeKey: 'k-1' })}\n${JSON.stringify({ type: 'noop', delayMs: 60_000 })}\n`,
    });
    expect(again.code, again.stderr).toBe(0);
    const [first, second] = again.stdout.trim().split('\n');
    expect(first).toBe(`${out[1]!.id} (an unfinished job with this dedupe key already existed)`);
    expect(second).toMatch(/^[0-9a-f]{24}$/);
  });

  it('large --json output reaches a slow reader whole', async () => {
    const c = ctl('ctl_bigout');
    const file = join(tempDir('bigout'), 'jobs.ndjson');
    writeFileSync(
      file,
      Array.from({ length: 3_000 }, (_, i) => `{"type":"noop","params":{"i":${i}}}`).join('\n'),
    );
    // The reader stops after the first chunk and goes on once jobctl has exited (or after 10 s, so a
    // jobctl that waits for its output to be read is not left waiting forever): output still queued
    // inside jobctl when it exits would be lost.
    const child = spawn(
      process.execPath,
      [
        BIN.jobctl,
        'enqueue',
        '--file',
        file,
        '--json',
        '--settings',
        c.settings,
        '--mongo-uri',
        testMongoUri(),
      ],
      {
        env: {
          ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('JOBD_'))),
          JOBD_DATABASE: c.database,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    child.stdout.once('data', (d: Buffer) => {
      out += d.toString();
      child.stdout.pause();
      const resume = (): void => {
        child.stdout.resume();
      };
      const timer = setTimeout(resume, 10_000);
      void exited.then(() => {
        clearTimeout(timer);
        resume();
      });
      child.stdout.on('data', (more: Buffer) => (out += more.toString()));
    });
    const closed = new Promise<void>((res) => child.on('close', () => res()));
    expect(await exited, err).toBe(0);
    await closed;
    const rows = JSON.parse(out) as { line: number }[];
    expect(rows).toHaveLength(3_000);
    expect(out.length).toBeGreaterThan(200_000); // well past a pipe's 64 KiB
  });

  it('--file: a bad line is reported with its number and field; exit 2 and nothing written', async () => {
    const c = ctl('ctl_bulkbad');
    const file = join(tempDir('bulkbad'), 'jobs.ndjson');
    writeFileSync(
      file,
      [
        '{"type":"echo","params":{"ok":true}}',
        '{"type":"echo","params":[1,2]}',
        '{"type":"echo","priority":0}',
        '{"type":"echo" "params":{}}',
        '',
        '{"type":"echo","prio":3}',
        '{"params":{}}',
        '{"type":"echo","runAt":"tomorrow"}',
        '{"type":"echo","runAt":"2030-01-01T00:00:00Z","delayMs":5}',
        '["echo"]',
        '{"type":"echo","tags":["a",""]}',
      ].join('\n'),
    );
    const r = await c.call(['enqueue', '--file', file]);
    expect(r.code).toBe(2);
    for (const text of [
      'nothing was enqueued',
      `${file} line 2: params = [1,2] is not allowed: must be a JSON object ({ ... }); got an array`,
      `${file} line 3: priority = 0 is not allowed: must be an integer from 1 to 100`,
      `${file} line 4: not valid JSON`,
      `${file} line 6: "prio" is not a field of a job; the fields are type, params, priority`,
      `${file} line 7: type = (missing) is not allowed`,
      `${file} line 8: runAt = "tomorrow" is not allowed: must be an ISO 8601 date`,
      `${file} line 9: delayMs = 5 is not allowed: give runAt or delayMs, not both`,
      `${file} line 10: must be a JSON object with a "type"`,
      `${file} line 11: tags.1 = "" is not allowed: must be a non-empty string`,
    ]) {
      expect(r.stderr).toContain(text);
    }
    expect(r.stderr).not.toContain('line 1:');
    // The other refusals of --file in-process.
    expect(await c.hereJson<unknown[]>(['list'])).toEqual([]);

    const unknownType = join(tempDir('bulkbad'), 'jobs.ndjson');
    writeFileSync(unknownType, '{"type":"echo"}\n{"type":"resize"}\n{"type":"resize"}\n');
    const u = await c.here(['enqueue', '--file', unknownType]);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain(`job type "resize" (${unknownType} lines 2, 3) is not known`);
    expect(await c.hereJson<unknown[]>(['list'])).toEqual([]);

    const mixed = await c.here(['enqueue', 'echo', '--file', file, '--priority', '3', '--wait']);
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--file cannot be combined with <type>, --priority, --wait');
    const none = await c.here(['enqueue']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('give a job type');
  });

  it('an unknown type exits 2 naming it and the known types; --allow-unknown-type enqueues it', async () => {
    const c = ctl('ctl_types');
    const r = await c.call(['enqueue', 'ecoh', '--params', '{}']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'job type "ecoh" is not known: no settings define it and no live daemon runs it',
    );
    expect(r.stderr).toContain('did you mean "echo"?');
    expect(r.stderr).toContain(`known types: ${[...BUILTIN_JOB_TYPES].sort().join(', ')}`);
    expect(r.stderr).toContain('--allow-unknown-type');
    expect(await c.hereJson<unknown[]>(['list'])).toEqual([]);

    // A rolling deploy: no daemon knows the type yet. (In-process: the refusal above was the real one.)
    const allowed = await c.here(['enqueue', 'resize', '--allow-unknown-type', '--params', '{"w":2}']);
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(allowed.stderr).toContain('job type "resize" is not known to these settings or any live daemon');
    const id = allowed.stdout.trim();
    // The daemon that runs it applies its own type settings: nothing guessed here.
    const { job } = await c.hereJson<{ job: Record<string, unknown> }>(['show', id]);
    expect(job).toMatchObject({
      type: 'resize',
      state: 'queued',
      maxAttempts: null,
      timeoutMs: null,
      priority: 5,
    });
  });

  it('a type that only a live daemon on another host runs is known; a dead one does not count', async () => {
    const c = ctl('ctl_remote');
    await withDb(c.database, async (db) => {
      const workers = db.collection<ReturnType<typeof remoteWorker>>('workers');
      await workers.insertOne(remoteWorker('other-host:4242:a1', ['imaging.fft', 'echo'], new Date()));
      // Its heartbeat is far older than two lease periods: dead.
      await workers.insertOne(remoteWorker('gone-host:1:b2', ['archive'], new Date(Date.now() - 3_600_000)));
    });
    // In-process: the same refusal as a real process is in the test above.
    const ok = await c.hereJson<{ id: string }>([
      'enqueue',
      'imaging.fft',
      '--params',
      '{}',
      '--delay',
      '60000',
    ]);
    const { job } = await c.hereJson<{ job: Record<string, unknown> }>(['show', ok.id]);
    expect(job).toMatchObject({ type: 'imaging.fft', maxAttempts: null, timeoutMs: null });
    const dead = await c.here(['enqueue', 'archive']);
    expect(dead.code).toBe(2);
    expect(dead.stderr).toContain('job type "archive" is not known');
    expect(dead.stderr).toContain(
      `known types: ${[...BUILTIN_JOB_TYPES].sort().join(', ')}, and from live daemons: imaging.fft`,
    );
  });
});

describe('jobctl help and global options', { timeout: 180_000 }, () => {
  it('every command takes the global options; version with --settings works', async () => {
    const program = await buildProgram({}, { code: 0 });
    expect(program.commands.map((c) => c.name())).toEqual(
      expect.arrayContaining(['ping', 'version', 'status', 'list', 'show', 'enqueue', 'workers']),
    );
    // Each command loads only its own module: the names jobctl knows are exactly the commands there are.
    expect(program.commands.map((c) => c.name()).sort()).toEqual([...COMMAND_NAMES].sort());
    for (const name of COMMAND_NAMES) {
      const alone = await buildProgram({}, { code: 0 }, name);
      expect(alone.commands.map((c) => c.name())).toContain(name);
      expect(alone.commands.length, name).toBeLessThanOrEqual(2);
    }
    // Groups (jobctl queue pause|resume|clean) carry the options on each subcommand.
    const leaves = program.commands.flatMap((c) => (c.commands.length ? c.commands : [c]));
    for (const cmd of leaves) {
      expect(
        cmd.options.map((o) => o.long),
        cmd.name(),
      ).toEqual(expect.arrayContaining(['--settings', '--mongo-uri', '--database', '--json']));
    }
    const settings = writeSettings({});
    const version = await run('jobctl', [
      'version',
      '--settings',
      settings,
      '--mongo-uri',
      'embedded',
      '--json',
    ]);
    expect(version.code, version.stderr).toBe(0);
    expect(JSON.parse(version.stdout)).toMatchObject({ jobctl: expect.stringMatching(/^\d+\.\d+\.\d+/) });
  });

  it('--help names the exit codes and the environment variables', async () => {
    const top = await run('jobctl', ['--help']);
    for (const text of [
      'Exit codes:',
      '2  bad settings, flags or arguments',
      '3  no job with that id',
      'JOBD_SETTINGS',
      'JOBD_MONGO_URI',
      'JOBD_WORKER__LEASE_MS',
    ]) {
      expect(top.stdout).toContain(text);
    }
    // The full list, though a named command loads only its own module; a typo is still matched.
    for (const name of ['ping', 'perf', 'cleanup', 'queue', 'dataset']) expect(top.stdout).toContain(name);
    const typo = await run('jobctl', ['perff']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('(Did you mean perf?)');
    // A command's own help: the same path for each, in-process.
    const enqueue = await runInProcess(['enqueue', '--help']);
    expect(enqueue.code).toBe(0);
    expect(enqueue.stdout).toContain('1 failure (with --wait: the job failed or was');
    expect((await runInProcess(['show', '--help'])).stdout).toContain('3 no job with that id');
    expect((await runInProcess(['cancel', '--help'])).stdout).toContain(
      '1 failure, or the job had already finished',
    );
  });
});

describe('jobctl with a running jobd', { timeout: 180_000 }, () => {
  it('enqueue --wait exits 0 when the job completes and 1 when it fails; logs and workers', async () => {
    const database = testDbName('ctl_wait');
    const folder = tempDir('wait');
    writeFileSync(
      join(folder, 'flaky.mjs'),
      "export default (params, ctx) => { if (ctx.attempt === 1) throw new Error('first attempt fails'); return { attempt: ctx.attempt }; };\n",
    );
    const settings = writeSettings(
      {
        mongoUri: testMongoUri(),
        dataDir: './var',
        worker: { concurrency: 2 },
        jobTypes: {
          flaky: { handler: './flaky.mjs', maxAttempts: 3, retry: { baseMs: 1, capMs: 10, jitter: 0 } },
        },
      },
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

      // A job that failed once, then completed: show puts the outcome first, the old error under its attempt.
      // --wait's exit codes as a real process above; what follows reads the jobs in-process.
      const flaky = await runInProcess(['enqueue', 'flaky', '--wait', '--json', '--settings', settings], {
        env,
      });
      expect(flaky.code, flaky.stderr).toBe(0);
      const flakyId = (JSON.parse(flaky.stdout) as { id: string }).id;
      const shown = await runInProcess(['show', flakyId, '--settings', settings], { env });
      expect(shown.code).toBe(0);
      const lines = shown.stdout.split('\n');
      expect(lines[0]).toMatch(/^completed on attempt 2 of 3 at /);
      expect(lines[1]).toBe('result: {"attempt":2}');
      expect(shown.stdout).not.toMatch(/last error/);
      const earlier = shown.stdout.slice(shown.stdout.indexOf('errors of earlier attempts'));
      expect(earlier).toMatch(/│ 1 +│.*Error: first attempt fails/);
      expect(shown.stdout.indexOf('errors of earlier attempts')).toBeGreaterThan(0);
      const asJson = await runInProcess(['show', flakyId, '--json', '--settings', settings], { env });
      const parsed = JSON.parse(asJson.stdout) as { job: Record<string, unknown>; events: unknown[] };
      expect(Object.keys(parsed)).toEqual(['job', 'events']);
      expect(parsed.job).toMatchObject({
        state: 'completed',
        attempts: 2,
        result: { attempt: 2 },
        lastError: { message: 'first attempt fails', attempt: 1 },
      });

      const badId = bad.stdout.split('\n')[0]!.trim();
      const failedShown = await runInProcess(['show', badId, '--settings', settings], { env });
      expect(failedShown.stdout.split('\n')[0]).toMatch(/^failed on attempt 1 of /);
      expect(failedShown.stdout.split('\n')[1]).toBe('error: DoNotRetryError (JOBD_DO_NOT_RETRY): nope');
      expect(failedShown.stdout).not.toContain('errors of earlier attempts');

      const logs = await run('jobctl', ['logs', done.id, '--settings', settings], { env });
      expect(logs.code).toBe(0);

      const workers = await runInProcess(['workers', '--json', '--settings', settings], { env });
      expect(workers.code).toBe(0);
      const list = JSON.parse(workers.stdout) as { pid: number; status: string }[];
      expect(list).toMatchObject([{ pid: daemon.pid, status: 'alive' }]);
    } finally {
      const exit = await daemon.stop();
      expect(exit.code).toBe(0);
    }
  });
});
