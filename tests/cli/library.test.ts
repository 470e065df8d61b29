/**
 * The library as users' code sees it: the built package entry (dist/index.js, what `import 'jobd'`
 * loads), not the sources. `npm run build` first.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { tempDir } from './proc.js';

type Jobd = typeof import('../../src/index.js');
const ROOT = resolve(import.meta.dirname, '../..');
const jobd = (): Promise<Jobd> => import(pathToFileURL(join(ROOT, 'dist/index.js')).href) as Promise<Jobd>;

function settingsFolder(content: unknown): { folder: string; file: string } {
  const folder = tempDir('lib');
  const file = join(folder, 'settings.json');
  writeFileSync(file, JSON.stringify(content));
  return { folder, file };
}

describe('loadSettings, exported for startDaemon', () => {
  it('layers defaults < file < JOBD_* environment < overrides, like jobd', async () => {
    const { loadSettings } = await jobd();
    const { folder, file } = settingsFolder({
      dataDir: './state',
      worker: { concurrency: 1, leaseMs: 20_000, killGraceMs: 1_000 },
    });
    const config = loadSettings({
      file,
      env: { JOBD_WORKER__LEASE_MS: '40000', JOBD_WORKER__KILL_GRACE_MS: '2000', JOBD_DATABASE: 'fromenv' },
      overrides: { worker: { killGraceMs: 3_000 }, logLevel: 'warn' },
    });
    expect(config.dataDir).toBe(join(folder, 'state')); // relative to the file's folder
    expect(config.worker.concurrency).toBe(1); // file
    expect(config.worker.leaseMs).toBe(40_000); // env beats file
    expect(config.worker.killGraceMs).toBe(3_000); // overrides beat env
    expect(config.database).toBe('fromenv');
    expect(config.logLevel).toBe('warn');
    expect(config.worker.pollMaxMs).toBe(2_000); // default
    expect(Object.isFrozen(config.worker)).toBe(true);
    expect(Object.keys(config.jobTypes)).toEqual(expect.arrayContaining(['echo', 'noop', 'sleep', 'fail']));
  });

  it('reads $JOBD_SETTINGS when no file is given, and process.env when no env is given', async () => {
    const { loadSettings } = await jobd();
    const { file } = settingsFolder({ database: 'fromfile' });
    expect(loadSettings({ env: { JOBD_SETTINGS: file } }).database).toBe('fromfile');
    expect(loadSettings({ env: {} }).database).toBe('jobd');
  });

  it('bad settings throw a ConfigError naming the key, the value and where it came from', async () => {
    const { loadSettings, ConfigError } = await jobd();
    const { file } = settingsFolder({ worker: { concurrency: 2 } });
    let caught: unknown;
    try {
      loadSettings({ file, env: {}, overrides: { worker: { concurrency: -1 } } });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toContain(
      'settings: worker.concurrency = -1 is not allowed: must be an integer from 1 to 1024 (from overrides)',
    );
  });

  it('startDaemon({ config: loadSettings(...) }) runs jobs, including a handler named in the file', async () => {
    const { loadSettings, startDaemon, JobdClient } = await jobd();
    const database = testDbName('lib');
    const { folder, file } = settingsFolder({
      dataDir: './var',
      logLevel: 'warn',
      worker: { concurrency: 2 },
      jobTypes: { double: { handler: './double.mjs', maxAttempts: 1 } },
    });
    writeFileSync(
      join(folder, 'double.mjs'),
      'export default async (params, ctx) => ({ twice: params.n * 2, attempt: ctx.attempt, type: ctx.type });\n',
    );
    const config = loadSettings({
      file,
      env: { JOBD_DATABASE: database },
      overrides: { mongoUri: testMongoUri() },
    });
    const daemon = await startDaemon({ config });
    expect(config.database).toBe(database);
    // As the README shows it: the loaded settings are a client's options too.
    const client = await JobdClient.connect(config);
    try {
      const { job } = await client.enqueue('double', { n: 21 });
      const done = await client.waitFor(job._id, { timeoutMs: 60_000 });
      expect(done).toMatchObject({ state: 'completed', result: { twice: 42, attempt: 1, type: 'double' } });
    } finally {
      await client.close();
      await daemon.stop({ graceMs: 5_000 });
    }
  });
});
