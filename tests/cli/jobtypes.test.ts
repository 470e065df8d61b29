/**
 * Typed job types, queues and data dirs through the real binaries: jobctl refuses bad inputs and paths
 * outside the data dirs with exit 2 (nothing written), lists types with their JSON Schemas, pauses,
 * resumes and cleans queues; a running jobd fails an invalid output with JOBD_INVALID_OUTPUT and
 * refuses a symlink swapped in after enqueue.
 */
import {
  mkdirSync,
  readFileSync,
  realpathSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  existsSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { waitUntil } from '../helpers/waitFor.js';
import { inProcessCalls } from './inProcess.js';
import { Proc, run, tempDir, writeSettings, type RunOptions } from './proc.js';
import { BUILTIN_JOB_TYPES } from '../../src/jobs/registry.js';

const FIXTURES = resolve(import.meta.dirname, '../fixtures/jobs');

function setup(label: string) {
  const database = testDbName(label);
  const folder = realpathSync(tempDir(label));
  const dirs = {
    raw: join(folder, 'data/raw'),
    processed: join(folder, 'data/processed'),
    outside: join(folder, 'outside'),
  };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  const settings = writeSettings(
    {
      mongoUri: testMongoUri(),
      dataDir: './var',
      logLevel: 'info',
      dataDirs: { raw: './data/raw', processed: './data/processed' },
      worker: { concurrency: 2, pollMaxMs: 500 },
      jobTypes: {
        copy_file: {
          handler: join(FIXTURES, 'typed.mjs'),
          maxAttempts: 2,
          retry: { baseMs: 1, capMs: 10, jitter: 0 },
        },
        add: { handler: join(FIXTURES, 'typedExports.mjs') },
      },
    },
    folder,
  );
  const env = { JOBD_DATABASE: database };
  const call = (args: string[], opts: RunOptions = {}) =>
    run('jobctl', [...args, '--settings', settings], { ...opts, env: { ...env, ...opts.env } });
  const json = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await call([...args, '--json']);
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  // The same calls in this process (inProcess.ts): for variants whose process-level behaviour (exit
  // code, output through a pipe) a real call in this file already checks.
  const { here, hereJson } = inProcessCalls(['--settings', settings], { env });
  return { folder, dirs, settings, env, call, json, here, hereJson };
}

describe('jobctl: typed inputs', { timeout: 120_000 }, () => {
  it('refuses a field of the wrong type with exit 2, naming its path, and writes nothing', async () => {
    const c = setup('types_bad');
    const bad = await c.call(['enqueue', 'sleep', '--params', '{"ms":"soon"}']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      'job type "sleep": params.ms = "soon" is not allowed: must be a number of milliseconds',
    );

    const paramsFile = join(c.folder, 'params.json');
    writeFileSync(paramsFile, JSON.stringify({ a: 1, b: 'two' }));
    // The first refusal as a real process; the same path for a file, --file and the rest in-process.
    const fromFile = await c.here(['enqueue', 'add', '--params', `@${paramsFile}`]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toContain(
      'job type "add": params.b = "two" is not allowed: expected number, received string',
    );

    const jobs = join(c.folder, 'jobs.ndjson');
    writeFileSync(
      jobs,
      [
        JSON.stringify({ type: 'add', params: { a: 1, b: 2 } }),
        JSON.stringify({ type: 'sleep', params: { ms: 1, extra: true } }),
        JSON.stringify({
          type: 'copy_file',
          params: { source: join(c.dirs.outside, 'x'), target: join(c.dirs.processed, 'y') },
        }),
      ].join('\n'),
    );
    const file = await c.here(['enqueue', '--file', jobs]);
    expect(file.code).toBe(2);
    expect(file.stderr).toContain(
      `${jobs} line 2: job type "sleep": params.extra = true is not allowed: unknown field`,
    );
    expect(file.stderr).toContain(
      `${jobs} line 3: job type "copy_file": params.source = "${join(c.dirs.outside, 'x')}" is not allowed`,
    );
    expect(file.stderr).toContain('outside the data dirs');
    expect(await c.hereJson<unknown[]>(['list'])).toEqual([]);

    const ok = await c.hereJson<{ id: string }>([
      'enqueue',
      'add',
      '--params',
      '{"a":1,"b":2}',
      '--delay',
      '3600000',
    ]);
    expect(ok.id).toMatch(/^[0-9a-f]{24}$/);
  });

  it('refuses a path outside the data dirs at enqueue (exit 2), also through a symlink', async () => {
    const c = setup('types_paths');
    writeFileSync(join(c.dirs.outside, 'secret.txt'), 'secret');
    symlinkSync(c.dirs.outside, join(c.dirs.raw, 'escape'));
    for (const source of [
      join(c.dirs.outside, 'secret.txt'),
      join(c.dirs.raw, 'escape', 'secret.txt'),
      '/etc/passwd',
    ]) {
      // The first as a real process, the others in-process.
      const r = await (source === '/etc/passwd' || source.includes('escape') ? c.here : c.call)([
        'enqueue',
        'copy_file',
        '--params',
        JSON.stringify({ source, target: join(c.dirs.processed, 'out.txt') }),
      ]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`params.source = "${source}" is not allowed`);
      expect(r.stderr).toContain('outside the data dirs');
    }
    expect(await c.hereJson<unknown[]>(['list'])).toEqual([]);
  });

  it('types --json lists every type with its queue, description, settings and JSON Schemas', async () => {
    const c = setup('types_list');
    const types = await c.json<
      {
        name: string;
        queue: string;
        description: string | null;
        input: unknown;
        output: unknown;
        settings: unknown;
        legacyNames: unknown;
      }[]
    >(['types']);
    const byName = Object.fromEntries(types.map((t) => [t.name, t]));
    expect(Object.keys(byName).sort()).toEqual(
      ['add', 'copy_file', 'jobd.retention', ...BUILTIN_JOB_TYPES].sort(),
    );
    expect(byName.copy_file).toMatchObject({
      queue: 'files',
      description: 'Copies one file inside the data dirs.',
      settings: { maxAttempts: 2 },
      legacyNames: { input_path: 'source', output_path: 'target' },
      input: {
        type: 'object',
        properties: {
          source: { type: 'string', 'x-jobd-data-path': { mode: 'read', dirs: ['raw'], kind: 'file' } },
          target: { type: 'string', 'x-jobd-data-path': { mode: 'write', dirs: ['processed'] } },
        },
      },
      output: { type: 'object', properties: { bytes: { type: 'integer' } } },
    });
    expect(byName.add).toMatchObject({
      queue: 'add',
      description: 'Adds two numbers.',
      input: { required: ['a', 'b'] },
    });
    expect(byName.sleep!.output).toMatchObject({ properties: { sleptMs: { type: 'number' } } });
    const human = await c.here(['types']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('copy_file');
  });
});

describe('jobd with typed types and queues', { timeout: 180_000 }, () => {
  it('validates outputs, rechecks paths at run time, and pauses, resumes and cleans queues', async () => {
    const c = setup('types_daemon');
    const daemon = new Proc('jobd', ['--settings', c.settings], { env: c.env });
    try {
      await daemon.waitForLine('"msg":"jobd started"');
      writeFileSync(join(c.dirs.raw, 'a.txt'), 'hello');

      // Legacy names work unchanged; the job writes its declared output.
      const good = await c.call([
        'enqueue',
        'copy_file',
        '--wait',
        '--json',
        '--params',
        JSON.stringify({
          input_path: join(c.dirs.raw, 'a.txt'),
          output_path: join(c.dirs.processed, 'a.txt'),
        }),
      ]);
      expect(good.stderr).toBe('');
      expect(good.code).toBe(0);
      expect(JSON.parse(good.stdout)).toMatchObject({ state: 'completed', result: { bytes: 5 } });
      expect(readFileSync(join(c.dirs.processed, 'a.txt'), 'utf8')).toBe('hello');

      // An output the schema refuses fails each attempt with JOBD_INVALID_OUTPUT.
      const bad = await c.call([
        'enqueue',
        'copy_file',
        '--wait',
        '--json',
        '--params',
        JSON.stringify({
          source: join(c.dirs.raw, 'a.txt'),
          target: join(c.dirs.processed, 'b.txt'),
          badOutput: true,
        }),
      ]);
      expect(bad.code).toBe(1);
      const failed = JSON.parse(bad.stdout) as {
        id: string;
        state: string;
        lastError: { code: string; message: string };
      };
      expect(failed).toMatchObject({
        state: 'failed',
        lastError: { code: 'JOBD_INVALID_OUTPUT', name: 'InvalidOutputError' },
      });
      expect(failed.lastError.message).toContain(
        'output.bytes = "5" is not allowed: expected number, received string',
      );
      // Real processes for --wait's exit codes 0 and 1 above; the rest of the flow in-process.
      const shown = await c.hereJson<{ job: { attempts: number; errors: { code: string }[] } }>([
        'show',
        failed.id,
      ]);
      expect(shown.job.attempts).toBe(2);
      expect(shown.job.errors.map((e) => e.code)).toEqual(['JOBD_INVALID_OUTPUT', 'JOBD_INVALID_OUTPUT']);

      // Paused: the daemon claims nothing from the queue, and queues shows it.
      expect(await c.hereJson(['queue', 'pause', 'files'])).toMatchObject({ queue: 'files', paused: true });
      await waitUntil(() => daemon.stdout.includes('"paused":["files"]'), {
        what: 'the daemon to see the pause',
      });
      symlinkSync(join(c.dirs.raw, 'a.txt'), join(c.dirs.raw, 'link.txt'));
      writeFileSync(join(c.dirs.outside, 'secret.txt'), 'secret');
      const held = await c.hereJson<{ id: string }>([
        'enqueue',
        'copy_file',
        '--params',
        JSON.stringify({ source: join(c.dirs.raw, 'link.txt'), target: join(c.dirs.processed, 'c.txt') }),
      ]);
      const other = await c.here(['enqueue', 'add', '--params', '{"a":2,"b":3}', '--wait', '--json']);
      expect(JSON.parse(other.stdout)).toMatchObject({ state: 'completed', result: { sum: 5 } });
      expect((await c.hereJson<{ job: { state: string } }>(['show', held.id])).job.state).toBe('queued');
      const queues = await c.hereJson<
        { name: string; paused: boolean; counts: Record<string, number>; oldestQueuedAgeMs: number | null }[]
      >(['queues']);
      expect(queues.find((q) => q.name === 'files')).toMatchObject({
        paused: true,
        counts: { queued: 1, completed: 1, failed: 1 },
      });
      expect(queues.find((q) => q.name === 'files')!.oldestQueuedAgeMs).toBeGreaterThanOrEqual(0);
      expect(queues.find((q) => q.name === 'add')).toMatchObject({ paused: false, counts: { completed: 1 } });

      // The symlink now leads outside the data dirs: refused when the job runs, never retried.
      unlinkSync(join(c.dirs.raw, 'link.txt'));
      symlinkSync(join(c.dirs.outside, 'secret.txt'), join(c.dirs.raw, 'link.txt'));
      expect(await c.hereJson(['queue', 'resume', 'files'])).toMatchObject({ queue: 'files', paused: false });
      const refused = await waitUntil(
        async () => {
          const s = await c.hereJson<{
            job: { state: string; attempts: number; lastError: { name: string; message: string } };
          }>(['show', held.id]);
          return s.job.state === 'failed' ? s.job : undefined;
        },
        { what: 'the swapped-symlink job to fail', timeoutMs: 60_000 },
      );
      expect(refused.attempts).toBe(1);
      expect(refused.lastError.name).toBe('InvalidInputError');
      expect(refused.lastError.message).toContain('outside the data dirs');
      expect(existsSync(join(c.dirs.processed, 'c.txt'))).toBe(false);

      // Clean: a dry run counts, then the jobs, their history and their log files go.
      const dry = await c.hereJson<{ jobs: number; dryRun: boolean }>([
        'queue',
        'clean',
        'files',
        '--state',
        'failed',
        '--dry-run',
      ]);
      expect(dry).toMatchObject({ jobs: 2, dryRun: true });
      expect(await c.hereJson<unknown[]>(['list', '--state', 'failed'])).toHaveLength(2);
      const young = await c.hereJson<{ jobs: number }>([
        'queue',
        'clean',
        'files',
        '--state',
        'failed',
        '--older-than',
        '1h',
      ]);
      expect(young.jobs).toBe(0);
      const logFile = join(c.folder, 'var/logs', `${failed.id}.log`);
      writeFileSync(logFile, 'log of a failed job\n');
      const cleaned = await c.hereJson<{ jobs: number; events: number; logFiles: number }>([
        'queue',
        'clean',
        'files',
        '--state',
        'failed',
      ]);
      expect(cleaned.jobs).toBe(2);
      expect(cleaned.events).toBeGreaterThanOrEqual(6);
      expect(cleaned.logFiles).toBeGreaterThanOrEqual(1);
      expect(existsSync(logFile)).toBe(false);
      expect(await c.hereJson<unknown[]>(['list', '--state', 'failed'])).toEqual([]);
      expect(await c.hereJson<unknown[]>(['list', '--state', 'completed'])).toHaveLength(2);
      const badAge = await c.here(['queue', 'clean', 'files', '--state', 'failed', '--older-than', 'soon']);
      expect(badAge.code).toBe(2);
    } finally {
      await daemon.stop();
    }
  });
});
