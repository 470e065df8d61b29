import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { logLines, Proc, run, tempDir, writeSettings } from './proc.js';

describe('bad settings exit 2 naming the key and the value', () => {
  const cases: [string, unknown, string[]][] = [
    [
      'wrong type',
      { worker: { leaseMs: '30s' } },
      ['worker.leaseMs = "30s"', 'must be an integer from 1000'],
    ],
    [
      'out of range',
      { worker: { concurrency: -3 } },
      ['worker.concurrency = -3 is not allowed: must be an integer from 1 to 1024'],
    ],
    [
      'unknown key',
      { worker: { concurency: 4 } },
      ['worker.concurency = 4', 'unknown key; did you mean "worker.concurrency"?'],
    ],
    ['bad enum', { logLevel: 'verbose' }, ['logLevel = "verbose"', 'must be one of trace, debug, info']],
    [
      'missing handler file',
      { jobTypes: { resize: { handler: './handlers/resize.js' } } },
      ['jobTypes.resize.handler = "./handlers/resize.js"', 'handlers/resize.js does not exist'],
    ],
    [
      'inline with a memory limit',
      { jobTypes: { echo: { mode: 'inline', memoryLimitMb: 256 } } },
      [
        'jobTypes.echo.memoryLimitMb = 256 is not allowed',
        'a job type in mode "inline" runs in the daemon\'s own process, where no memory limit can apply',
      ],
    ],
  ];

  // A real jobd for the kinds of check that differ in where they happen (a value's range, a file on
  // disk, a combination of keys); the type, enum and unknown-key checks take the same path (jobd prints
  // the settings loader's ConfigError and exits 2), so they check the loader's error, without a jobd each.
  const viaLoader = new Set(['wrong type', 'unknown key', 'bad enum']);
  for (const [name, settings, expected] of cases) {
    if (viaLoader.has(name)) {
      it(`the settings loader: ${name}`, () => {
        const file = writeSettings(settings);
        let err: Error | undefined;
        try {
          loadConfig({ settingsPath: file, env: {} });
        } catch (e) {
          err = e as Error;
        }
        expect(err?.name).toBe('ConfigError');
        for (const text of expected) expect(err?.message).toContain(text);
        expect(err?.message).toContain(file);
      });
      continue;
    }
    it(`jobd: ${name}`, async () => {
      const file = writeSettings(settings);
      const r = await run('jobd', ['--settings', file]);
      expect(r.code).toBe(2);
      for (const text of expected) expect(r.stderr).toContain(text);
      expect(r.stderr).toContain(file);
    });
  }

  it('jobctl: same settings, same message, same exit code', async () => {
    const file = writeSettings({ worker: { concurrency: -3 } });
    const r = await run('jobctl', ['status', '--settings', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'settings: worker.concurrency = -3 is not allowed: must be an integer from 1 to 1024',
    );
  });

  it('a settings file that does not exist', async () => {
    const r = await run('jobd', ['--settings', '/nonexistent/jobd-settings.json']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('cannot read settings file /nonexistent/jobd-settings.json');
  });

  it('bad flag values name the flag', async () => {
    const r = await run('jobd', ['--concurrency', 'lots', '--settings', writeSettings({})]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'worker.concurrency = "lots" is not allowed: must be an integer from 1 to 1024 (from --concurrency)',
    );
    const unknown = await run('jobd', ['--frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown option '--frobnicate'");
  });
});

describe('jobd --help', () => {
  it('names the exit codes, the signals and the environment variables', async () => {
    const r = await run('jobd', ['--help']);
    expect(r.code).toBe(0);
    for (const text of [
      '--settings <file>',
      'Exit codes:',
      '2  bad settings or flags',
      '4  another live jobd owns the pidfile',
      'SIGTERM',
      'JOBD_SETTINGS',
      'JOBD_MONGO_URI',
      'JOBD_WORKER__LEASE_MS',
      'STATE_DIRECTORY',
    ]) {
      expect(r.stdout).toContain(text);
    }
  });
});

describe('precedence: flag > env > file', () => {
  it('env beats the file (the error names the variable, not the file value)', async () => {
    const file = writeSettings({ worker: { concurrency: 2 } });
    const r = await run('jobctl', ['status', '--settings', file], { env: { JOBD_CONCURRENCY: 'abc' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'worker.concurrency = "abc" is not allowed: must be an integer from 1 to 1024 (from JOBD_CONCURRENCY)',
    );
  });

  it('a flag beats the environment', async () => {
    const file = writeSettings({});
    const env = {
      JOBD_MONGO_URI: 'mongodb://127.0.0.1:1/?directConnection=true',
      JOBD_DATABASE: testDbName('prec'),
    };
    const good = await run('jobctl', ['ping', '--json', '--settings', file, '--mongo-uri', testMongoUri()], {
      env,
    });
    expect(good.stderr).toBe('');
    expect(good.code).toBe(0);
    expect(JSON.parse(good.stdout)).toMatchObject({ ok: true, database: env.JOBD_DATABASE });

    const bad = await run('jobctl', ['ping', '--settings', file, '--mongo-uri', 'postgres://x'], {
      env: { ...env, JOBD_MONGO_URI: testMongoUri() },
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('mongoUri = "postgres://x" is not allowed');
    expect(bad.stderr).toContain('(from --mongo-uri)');
  });

  it('jobd reports the effective concurrency: file < env < flag', async () => {
    const folder = tempDir('prec');
    const file = writeSettings(
      { mongoUri: testMongoUri(), dataDir: './var', worker: { concurrency: 2 } },
      folder,
    );
    const env = { JOBD_DATABASE: testDbName('prec'), JOBD_CONCURRENCY: '3' };

    const started = async (args: string[]): Promise<number> => {
      const p = new Proc('jobd', ['--settings', file, ...args], { env });
      try {
        const line = await p.waitForLine('"msg":"jobd started"');
        return (JSON.parse(line) as { concurrency: number }).concurrency;
      } finally {
        const exit = await p.stop();
        expect(exit.code).toBe(0);
      }
    };
    expect(await started([])).toBe(3);
    expect(await started(['--concurrency', '5'])).toBe(5);
  });
});

describe('credentials never reach jobd or jobctl output', () => {
  // Unencoded, the password has the characters that break naive patterns: ":" "/" "@".
  const raw = 'pa:ss/w@rd-7Q';
  const enc = encodeURIComponent(raw);
  const leaked = (text: string): string[] =>
    [raw, enc, 'rd-7Q', 'pa:ss', 'pa%3Ass', 'rd%2D7Q'].filter((s) => text.includes(s));

  // Shapes a user may type by mistake: jobd and jobctl refuse them (exit 2) without printing the password.
  const malformed = [
    `mongodb//admin:${raw}@127.0.0.1:1/jobd`,
    `mongodb:/admin:${raw}@127.0.0.1:1`,
    `admin:${raw}@127.0.0.1:27017`,
    `mongodb://admin:${raw}@127.0.0.1:1/jobd`, // unescaped: the driver cannot parse it
    `mongodb+srv://admin:${enc}@h1.invalid,h2.invalid/jobd`,
  ];
  // Well-formed, nothing listens: jobctl exits 1, jobd retries and logs; secrets ride in options too.
  const unreachable = [
    `mongodb://admin:${enc}@127.0.0.1:1/jobd?directConnection=true&authSource=admin`,
    `mongodb://127.0.0.1:1/jobd?directConnection=true&tls=true&tlsCertificateKeyFile=/nonexistent/client.pem&tlsCertificateKeyFilePassword=${enc}`,
    `mongodb://127.0.0.1:1/?directConnection=true&authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:${enc}`,
    `mongodb://127.0.0.1:1/?directConnection=true&proxyHost=127.0.0.1&proxyPort=1&proxyUsername=u&proxyPassword=${enc}`,
    `mongodb+srv://admin:${enc}@cluster0.invalid/jobd`,
  ];

  /**
   * fn over items, several at a time: each is a node process that mostly waits out the driver's server
   * selection (5 s), so eight share the machine well even when it is busy.
   */
  async function fewAtATime<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
    const out: R[] = [];
    for (let i = 0; i < items.length; i += 8) out.push(...(await Promise.all(items.slice(i, i + 8).map(fn))));
    return out;
  }

  /** jobd until it exits or reports the database unreachable (then SIGTERM); all its output. */
  async function jobdOutput(args: string[], env: Record<string, string> = {}): Promise<string> {
    const p = new Proc('jobd', args, { env: { JOBD_DATABASE: testDbName('redact'), ...env } });
    const exited = p.exited.then(() => 'exited');
    const unreachableLine = p.waitForLine('unreachable', 60_000).then(
      () => 'logged',
      () => 'exited',
    );
    await Promise.race([exited, unreachableLine]);
    await p.stop();
    return p.stdout + p.stderr;
  }

  /** Each URI by flag, and a few by JOBD_MONGO_URI and by the settings file. */
  function cases(extra: Record<string, unknown> = {}) {
    const file = (more: Record<string, unknown> = {}) => writeSettings({ ...extra, ...more });
    return [
      ...[...malformed, ...unreachable].map((uri) => ({
        uri,
        args: ['--mongo-uri', uri, '--settings', file()],
        env: {},
      })),
      ...[malformed[0]!, unreachable[1]!].map((uri) => ({
        uri,
        args: ['--settings', file()],
        env: { JOBD_MONGO_URI: uri },
      })),
      ...[malformed[2]!, unreachable[2]!].map((uri) => ({
        uri,
        args: ['--settings', file({ mongoUri: uri })],
        env: {},
      })),
    ];
  }

  it('jobctl: malformed URIs exit 2 and unreachable ones exit 1, by flag, variable or file', async () => {
    const results = await fewAtATime(cases(), async (c) => ({
      ...c,
      r: await run('jobctl', ['ping', ...c.args], { env: c.env, timeoutMs: 120_000 }),
    }));
    for (const { uri, r } of results) {
      const out = r.stdout + r.stderr;
      expect(leaked(out), `${uri}:\n${out}`).toEqual([]);
      expect(r.code, `${uri}:\n${out}`).toBe(malformed.includes(uri) ? 2 : 1);
      expect(r.stderr).toMatch(/^jobctl: /);
    }
  }, 300_000);

  it('jobd: nothing it prints or logs carries the password', async () => {
    const outputs = await fewAtATime(cases({ dataDir: './var' }), async (c) => ({
      ...c,
      out: await jobdOutput(c.args, c.env),
    }));
    for (const { uri, out } of outputs) {
      expect(leaked(out), `${uri}:\n${out}`).toEqual([]);
      expect(out, uri).toMatch(/mongoUri|unreachable/);
    }
  }, 300_000);

  it('a URI with credentials is shown redacted in the log', async () => {
    const secret = 'pa55-w0rd-never-logged';
    // Nothing listens on port 1: jobd keeps retrying its first connection and logs each attempt.
    const uri = `mongodb://alice:${secret}@127.0.0.1:1/jobd?directConnection=true&authSource=admin`;
    const file = writeSettings({ dataDir: './var' });
    const p = new Proc('jobd', ['--settings', file, '--mongo-uri', uri], {
      env: { JOBD_DATABASE: testDbName('redact') },
    });
    const line = await p.waitForLine('database unreachable at start');
    const exit = await p.stop();
    expect(exit.code).toBe(0);
    expect(line).toContain('mongodb://***@127.0.0.1:1/jobd');
    expect(p.stdout + p.stderr).not.toContain(secret);
    expect(logLines(p.stdout).length).toBeGreaterThan(0);
  });
});
