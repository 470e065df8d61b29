import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { envName, loadConfig, type LoadOptions } from '../../src/config/load.js';
import { MIB } from '../../src/config/defaults.js';

function dir(): string {
  return mkdtempSync(join(tmpdir(), 'jobd-config-'));
}

function settingsFile(content: unknown, folder = dir()): string {
  const file = join(folder, 'settings.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function load(opts: LoadOptions) {
  return loadConfig({ env: {}, builtins: () => ({}), ...opts });
}

function errorOf(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected an error');
}

describe('defaults', () => {
  it('fills every key and derives the dependent ones', () => {
    const cwd = dir();
    const c = load({ cwd });
    expect(c.mongoUri).toBe('embedded');
    expect(c.database).toBe('jobd');
    expect(c.embedded).toEqual({
      host: '127.0.0.1',
      port: 27117,
      dataDir: join(cwd, 'var', 'db'),
      repair: false,
    });
    expect(c.dataDir).toBe(join(cwd, 'var'));
    expect(c.logDir).toBe(join(cwd, 'var', 'logs'));
    expect(c.pidFile).toBe(join(cwd, 'var', 'jobd.pid'));
    expect(c.worker.leaseMs).toBe(30_000);
    expect(c.worker.heartbeatMs).toBe(10_000);
    expect(c.maintenance.rescueIntervalMs).toBe(15_000);
    expect(c.worker.shutdownGraceMs).toBe(30_000);
    expect(c.worker.killGraceMs).toBe(5_000);
    expect(c.worker.progressIntervalMs).toBe(1_000);
    expect(c.worker.logTailBytes).toBe(4096);
    expect(c.worker.logStoreBytes).toBe(16 * MIB);
    expect(c.worker.logShipMs).toBe(250);
    expect(c.worker.errorHistory).toBe(10);
    expect(c.worker.claimBatchSize).toBe(50);
    expect(c.worker.pollMinMs).toBe(50);
    expect(c.worker.pollMaxMs).toBe(2_000);
    expect(c.worker.concurrency).toBeGreaterThanOrEqual(1);
    expect(c.pool).toEqual({
      maxJobsPerChild: 50_000,
      sharedChildren: availableParallelism(),
      maxRssBytes: 512 * MIB,
      sampleIntervalMs: 1000,
    });
    expect(c.defaults).toEqual({
      mode: 'pooled',
      timeoutMs: 3_600_000,
      maxAttempts: 3,
      priority: 5,
      retry: { baseMs: 1000, factor: 2, capMs: 300_000, jitter: 0.2 },
    });
  });

  it('is deeply frozen', () => {
    const c = load({ cwd: dir() });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.worker)).toBe(true);
    expect(Object.isFrozen(c.defaults.retry)).toBe(true);
  });

  it('uses systemd STATE_DIRECTORY as the data folder when the settings do not name one', () => {
    const c = load({ cwd: dir(), env: { STATE_DIRECTORY: '/var/lib/jobd' } });
    expect(c.dataDir).toBe('/var/lib/jobd');
    expect(c.pidFile).toBe('/var/lib/jobd/jobd.pid');
    expect(c.embedded.dataDir).toBe('/var/lib/jobd/db');
  });

  it('derives heartbeat and rescue interval from a changed lease', () => {
    const c = load({ cwd: dir(), env: { JOBD_WORKER__LEASE_MS: '9000' } });
    expect(c.worker.heartbeatMs).toBe(3000);
    expect(c.maintenance.rescueIntervalMs).toBe(4500);
  });
});

describe('layers: flag > env > file > defaults', () => {
  it('file beats defaults; relative paths resolve against the file folder', () => {
    const folder = dir();
    const file = settingsFile(
      { dataDir: './state', logDir: 'logs-here', worker: { concurrency: 3 } },
      folder,
    );
    const c = load({ settingsPath: file, cwd: dir() });
    expect(c.worker.concurrency).toBe(3);
    expect(c.dataDir).toBe(join(folder, 'state'));
    expect(c.logDir).toBe(join(folder, 'logs-here'));
    expect(c.embedded.dataDir).toBe(join(folder, 'state', 'db'));
  });

  it('env beats file, flag beats env', () => {
    const file = settingsFile({ worker: { concurrency: 3 }, logLevel: 'warn', database: 'fromfile' });
    const env = { JOBD_CONCURRENCY: '5', JOBD_LOG_LEVEL: 'debug', JOBD_DATABASE: 'fromenv' };
    const c1 = load({ settingsPath: file, env });
    expect(c1.worker.concurrency).toBe(5);
    expect(c1.logLevel).toBe('debug');
    expect(c1.database).toBe('fromenv');
    const c2 = load({ settingsPath: file, env, flags: { concurrency: '7', logLevel: 'error' } });
    expect(c2.worker.concurrency).toBe(7);
    expect(c2.logLevel).toBe('error');
    expect(c2.database).toBe('fromenv');
  });

  it('the full env name beats the short alias', () => {
    const c = load({ cwd: dir(), env: { JOBD_CONCURRENCY: '2', JOBD_WORKER__CONCURRENCY: '6' } });
    expect(c.worker.concurrency).toBe(6);
  });

  it('maps nested keys to JOBD_A__B_C names', () => {
    expect(envName(['worker', 'leaseMs'])).toBe('JOBD_WORKER__LEASE_MS');
    expect(envName(['mongoUri'])).toBe('JOBD_MONGO_URI');
    expect(envName(['defaults', 'retry', 'baseMs'])).toBe('JOBD_DEFAULTS__RETRY__BASE_MS');
    const c = load({
      cwd: dir(),
      env: {
        JOBD_DEFAULTS__RETRY__BASE_MS: '250',
        JOBD_WORKER__CHANGE_STREAMS: 'false',
        JOBD_EMBEDDED__DATA_DIR: 'null',
        JOBD_DATA_DIRS: '/a, /b',
      },
    });
    expect(c.defaults.retry.baseMs).toBe(250);
    expect(c.worker.changeStreams).toBe(false);
    expect(c.embedded.dataDir).toBeNull();
    expect(c.dataDirs).toEqual({ a: '/a', b: '/b' });
  });

  it('leaves JOBD_ variables that are not settings alone', () => {
    expect(() => load({ cwd: dir(), env: { JOBD_KEEP_TEST_DB: '1' } })).not.toThrow();
  });
});

describe('messages name the key, the value and what is allowed', () => {
  it('out of range', () => {
    const file = settingsFile({ worker: { concurrency: -3 } });
    const err = errorOf(() => load({ settingsPath: file }));
    expect(err.name).toBe('ConfigError');
    expect(err.message).toContain(
      'settings: worker.concurrency = -3 is not allowed: must be an integer from 1 to 1024',
    );
    expect(err.message).toContain(file);
  });

  it('stored logs and the event stream', () => {
    const logs = errorOf(() => load({ settingsPath: settingsFile({ worker: { logStoreBytes: -1 } }) }));
    expect(logs.message).toContain('worker.logStoreBytes = -1 is not allowed: must be an integer from 0 to');
    const beat = errorOf(() => load({ settingsPath: settingsFile({ http: { eventHeartbeatMs: 5 } }) }));
    expect(beat.message).toContain(
      'http.eventHeartbeatMs = 5 is not allowed: must be an integer from 100 to',
    );
    const c = load({ settingsPath: settingsFile({ http: { eventBufferBytes: 4096 } }) });
    expect(c.http).toMatchObject({
      eventBufferBytes: 4096,
      eventHeartbeatMs: 15_000,
      eventSlowClientMs: 30_000,
    });
  });

  it('wrong type', () => {
    const err = errorOf(() => load({ settingsPath: settingsFile({ worker: { leaseMs: '30s' } }) }));
    expect(err.message).toContain('worker.leaseMs = "30s" is not allowed: must be an integer from 1000');
  });

  it('embedded.repair is a boolean, from the file or JOBD_EMBEDDED__REPAIR', () => {
    const err = errorOf(() => load({ settingsPath: settingsFile({ embedded: { repair: 'please' } }) }));
    expect(err.message).toContain('embedded.repair = "please" is not allowed: must be true or false');
    expect(load({ settingsPath: settingsFile({ embedded: { repair: true } }) }).embedded.repair).toBe(true);
    expect(load({ cwd: dir(), env: { JOBD_EMBEDDED__REPAIR: 'true' } }).embedded.repair).toBe(true);
  });

  it('bad enum', () => {
    const err = errorOf(() => load({ settingsPath: settingsFile({ logLevel: 'verbose' }) }));
    expect(err.message).toContain(
      'logLevel = "verbose" is not allowed: must be one of trace, debug, info, warn, error, fatal, silent',
    );
  });

  it('unknown key with a suggestion', () => {
    const err = errorOf(() => load({ settingsPath: settingsFile({ worker: { concurency: 4 } }) }));
    expect(err.message).toContain(
      'worker.concurency = 4 is not allowed: unknown key; did you mean "worker.concurrency"?',
    );
  });

  it('unknown top-level key', () => {
    const err = errorOf(() => load({ settingsPath: settingsFile({ mongoURI: 'embedded' }) }));
    expect(err.message).toContain(
      'mongoURI = "embedded" is not allowed: unknown key; did you mean "mongoUri"?',
    );
  });

  it('a bad env value names the variable', () => {
    const err = errorOf(() => load({ cwd: dir(), env: { JOBD_CONCURRENCY: 'many' } }));
    expect(err.message).toContain(
      'worker.concurrency = "many" is not allowed: must be an integer from 1 to 1024 (from JOBD_CONCURRENCY)',
    );
  });

  it('worker.heapGrowthPercent: 50 by default, 0..300, from settings or JOBD_WORKER__HEAP_GROWTH_PERCENT', () => {
    expect(load({ cwd: dir() }).worker.heapGrowthPercent).toBe(50);
    expect(
      load({ cwd: dir(), env: { JOBD_WORKER__HEAP_GROWTH_PERCENT: '0' } }).worker.heapGrowthPercent,
    ).toBe(0);
    const err = errorOf(() => load({ settingsPath: settingsFile({ worker: { heapGrowthPercent: 400 } }) }));
    expect(err.message).toContain(
      'worker.heapGrowthPercent = 400 is not allowed: must be an integer from 0 to 300 (percent; 0: V8 decides)',
    );
  });

  it('a misspelt nested env variable is an error with a suggestion', () => {
    const err = errorOf(() => load({ cwd: dir(), env: { JOBD_WORKER__LEASEMS: '1000' } }));
    expect(err.message).toContain('JOBD_WORKER__LEASEMS');
    expect(err.message).toContain('did you mean JOBD_WORKER__LEASE_MS?');
  });

  it('a bad flag value names the flag', () => {
    const err = errorOf(() => load({ cwd: dir(), flags: { concurrency: '0' } }));
    expect(err.message).toContain(
      'worker.concurrency = 0 is not allowed: must be an integer from 1 to 1024 (from --concurrency)',
    );
  });

  it('cross-field rules', () => {
    const err = errorOf(() =>
      load({
        settingsPath: settingsFile({
          worker: { leaseMs: 5000, heartbeatMs: 6000, pollMinMs: 500, pollMaxMs: 100 },
        }),
      }),
    );
    expect(err.message).toContain(
      'worker.heartbeatMs = 6000 is not allowed: must be less than worker.leaseMs (5000)',
    );
    expect(err.message).toContain(
      'worker.pollMaxMs = 100 is not allowed: must be at least worker.pollMinMs (500)',
    );
  });

  it('bad mongoUri', () => {
    const err = errorOf(() => load({ cwd: dir(), flags: { mongoUri: 'postgres://x' } }));
    expect(err.message).toContain(
      'mongoUri = "postgres://x" is not allowed: must be "embedded" or a mongodb://',
    );
  });

  it('a mongoUri the driver cannot parse is refused, the password hidden', () => {
    const err = errorOf(() =>
      load({ cwd: dir(), flags: { mongoUri: 'mongodb://admin:pa:ss/w@rd-7Q@db.example.net/jobd' } }),
    );
    expect(err.code).toBe('JOBD_CONFIG');
    expect(err.message).toContain('mongoUri = "mongodb://***@db.example.net/jobd" is not allowed');
    expect(err.message).toContain('Password contains unescaped characters');
    expect(err.message).toContain('percent-encode');
    expect(err.message).not.toContain('rd-7Q');
    const srv = errorOf(() => load({ cwd: dir(), env: { JOBD_MONGO_URI: 'mongodb+srv://a,b/x' } }));
    expect(srv.message).toContain('mongodb+srv URI cannot have multiple service names');
    expect(srv.message).toContain('(from JOBD_MONGO_URI)');
  });

  it('values are shown with credentials hidden, even when cut short', () => {
    const long = `mongodb//admin:S3cr3t-${'x'.repeat(200)}@db.example.net/jobd`;
    const err = errorOf(() => load({ cwd: dir(), env: { JOBD_MONGO_URI: long } }));
    expect(err.message).toContain('mongoUri = "mongodb//***@db.example.net/jobd"');
    expect(err.message).not.toContain('S3cr3t');
    const unknown = errorOf(() =>
      load({ cwd: dir(), env: { JOBD_MONGO__URI: 'mongodb://admin:S3cr3t@db.example.net/' } }),
    );
    expect(unknown.message).toContain('JOBD_MONGO__URI = "mongodb://***@db.example.net/" is not allowed');
  });

  it("retention is a schedule of jobd's own job type; names starting with jobd. are refused", () => {
    const off = load({ cwd: dir() });
    expect(off.jobTypes['jobd.retention']).toMatchObject({
      system: 'retention',
      maxAttempts: 1,
      concurrency: 1,
    });
    expect(off.schedules['jobd.retention']).toBeUndefined();
    const on = load({
      settingsPath: settingsFile({ retention: { completed: '30d', failed: null, intervalMs: 60_000 } }),
    });
    expect(on.schedules['jobd.retention']).toEqual({
      everyMs: 60_000,
      type: 'jobd.retention',
      params: { completed: 30 * 24 * 3_600_000 },
      catchUp: 'skip',
      catchUpMax: 1,
    });
    const err = errorOf(() =>
      load({
        settingsPath: settingsFile({
          jobTypes: { 'jobd.mine': { handler: '/x.mjs' } },
          schedules: { 'jobd.retention': { everyMs: 1000, type: 'noop' } },
        }),
      }),
    );
    expect(err.message).toContain(
      'settings: jobTypes.jobd.mine = "jobd.mine" is not allowed: names starting with "jobd."',
    );
    expect(err.message).toContain('settings: schedules.jobd.retention = "jobd.retention" is not allowed');
  });

  it('settings file problems', () => {
    expect(errorOf(() => load({ settingsPath: '/nonexistent/jobd.json' })).message).toContain(
      'cannot read settings file /nonexistent/jobd.json: no such file',
    );
    expect(errorOf(() => load({ settingsPath: settingsFile('{ "worker": ') })).message).toContain(
      'is not valid JSON',
    );
    expect(errorOf(() => load({ settingsPath: settingsFile('[1]') })).message).toContain(
      'must hold a JSON object',
    );
  });
});

describe('job types', () => {
  const builtins = () => ({
    echo: {
      name: 'echo',
      handler: '/builtin/echo.js',
      mode: 'pooled' as const,
      timeoutMs: 1000,
      maxAttempts: 3,
      priority: 5,
      retry: { baseMs: 1000, factor: 2, capMs: 300_000, jitter: 0.2 },
    },
  });

  it('merge over built-ins, resolve handlers against the settings folder, convert MiB', () => {
    const folder = dir();
    mkdirSync(join(folder, 'handlers'));
    writeFileSync(join(folder, 'handlers', 'resize.js'), 'export default () => 1;');
    const file = settingsFile(
      {
        jobTypes: {
          echo: { timeoutMs: 5000, retry: { capMs: 60_000 } },
          resize: { handler: './handlers/resize.js', mode: 'isolated', memoryLimitMb: 256, concurrency: 2 },
        },
      },
      folder,
    );
    const c = loadConfig({ settingsPath: file, env: {}, builtins });
    expect(c.jobTypes.echo).toMatchObject({
      handler: '/builtin/echo.js',
      timeoutMs: 5000,
      retry: { baseMs: 1000, capMs: 60_000 },
    });
    expect(c.jobTypes.resize).toEqual({
      name: 'resize',
      handler: join(folder, 'handlers', 'resize.js'),
      mode: 'isolated',
      timeoutMs: 3_600_000,
      maxAttempts: 3,
      priority: 5,
      concurrency: 2,
      memoryLimitBytes: 256 * MIB,
      retry: { baseMs: 1000, factor: 2, capMs: 300_000, jitter: 0.2 },
    });
  });

  it('a missing handler file is a clear error', () => {
    const folder = dir();
    const file = settingsFile({ jobTypes: { resize: { handler: './handlers/missing.js' } } }, folder);
    const err = errorOf(() => loadConfig({ settingsPath: file, env: {}, builtins }));
    expect(err.message).toContain(
      `settings: jobTypes.resize.handler = "./handlers/missing.js" is not allowed: the handler file ${join(folder, 'handlers', 'missing.js')} does not exist`,
    );
  });

  it('a new type without a handler is an error', () => {
    const err = errorOf(() =>
      loadConfig({
        settingsPath: settingsFile({ jobTypes: { thumb: { timeoutMs: 10 } } }),
        env: {},
        builtins,
      }),
    );
    expect(err.message).toContain('jobTypes.thumb.handler is missing');
  });

  it('bad job type fields', () => {
    const err = errorOf(() =>
      loadConfig({
        settingsPath: settingsFile({ jobTypes: { echo: { mode: 'threaded', retry: { jitter: 2 } } } }),
        env: {},
        builtins,
      }),
    );
    expect(err.message).toContain(
      'jobTypes.echo.mode = "threaded" is not allowed: must be one of pooled, isolated, inline',
    );
    expect(err.message).toContain(
      'jobTypes.echo.retry.jitter = 2 is not allowed: must be a number from 0 to 1',
    );
  });

  it('inline is per type, and refuses what the daemon process cannot give a job', () => {
    const c = loadConfig({
      settingsPath: settingsFile({ jobTypes: { echo: { mode: 'inline' } } }),
      env: {},
      builtins,
    });
    expect(c.jobTypes.echo?.mode).toBe('inline');
    const asDefault = errorOf(() =>
      loadConfig({ settingsPath: settingsFile({ defaults: { mode: 'inline' } }), env: {}, builtins }),
    );
    expect(asDefault.message).toContain(
      'defaults.mode = "inline" is not allowed: must be one of pooled, isolated',
    );
    const err = errorOf(() =>
      loadConfig({
        settingsPath: settingsFile({
          jobTypes: {
            echo: { mode: 'inline', memoryLimitMb: 512 },
            gpu: { handler: '/bin/sh', mode: 'inline', needs: { gpus: 1 } },
          },
        }),
        env: {},
        builtins,
      }),
    );
    expect(err.message).toContain(
      `jobTypes.echo.memoryLimitMb = 512 is not allowed: a job type in mode "inline" runs in the daemon's own process, where no memory limit can apply`,
    );
    expect(err.message).toContain(
      'jobTypes.gpu.needs.gpus = 1 is not allowed: a job type in mode "inline" shares the daemon\'s environment',
    );
  });
});

describe('the data section', () => {
  it('settings.example.json loads, with the legacy data dirs under ./var/data', () => {
    const example = fileURLToPath(new URL('../../settings.example.json', import.meta.url));
    const c = loadConfig({ env: {}, settingsPath: example });
    const root = join(dirname(example), 'var/data');
    expect(c.dataDirs).toEqual(
      Object.fromEntries(['upload', 'converted', 'sync', 'auth', 'backup'].map((d) => [d, join(root, d)])),
    );
  });

  it('resolves paths against the settings file, keeps bare program names, and reaches the env', () => {
    const folder = dir();
    const c = load({
      settingsPath: settingsFile(
        {
          data: {
            extract: { maxBytes: 1024, maxEntries: 10 },
            rclone: { config: 'rclone.conf', program: 'rclone' },
            converter: { program: './bin/convert', args: ['--fast'], progressRegex: '(\\d+)%' },
          },
        },
        folder,
      ),
      env: { JOBD_DATA__EXTRACT__MAX_ENTRIES: '20' },
    });
    expect(c.data).toEqual({
      extract: { maxBytes: 1024, maxEntries: 20 },
      rclone: { config: join(folder, 'rclone.conf'), program: 'rclone' },
      converter: { program: join(folder, 'bin/convert'), args: ['--fast'], progressRegex: '(\\d+)%' },
    });
    expect(load({ cwd: dir() }).data).toEqual({ extract: {}, rclone: {} });
  });

  it('names the key, the value and what is allowed', () => {
    const e = errorOf(() =>
      load({
        settingsPath: settingsFile({
          data: {
            extract: { maxEntries: -1 },
            converter: { progressRegex: '(' },
            rclone: { configFile: '/x' },
          },
        }),
      }),
    );
    expect(e.message).toContain('data.extract.maxEntries = -1 is not allowed: must be an integer from 1 to');
    expect(e.message).toContain('data.converter.program = (missing) is not allowed');
    expect(e.message).toContain(
      'data.converter.progressRegex = "(" is not allowed: must be a regular expression',
    );
    expect(e.message).toContain(
      'data.rclone.configFile = "/x" is not allowed: unknown key Known keys of data.rclone: config, program',
    );
    const noGroup = errorOf(() =>
      load({ settingsPath: settingsFile({ data: { converter: { program: 'c', progressRegex: '\\d+%' } } }) }),
    );
    expect(noGroup.message).toContain('whose first group is a percentage');
  });
});
