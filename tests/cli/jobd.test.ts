import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { Proc, run, tempDir, writeSettings } from './proc.js';

async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  const pid = child.pid!;
  await new Promise((resolve) => child.once('exit', resolve));
  return pid;
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function harnessSettings(extra: Record<string, unknown> = {}) {
  const folder = tempDir('jobd');
  const settings = writeSettings({ mongoUri: testMongoUri(), dataDir: './var', ...extra }, folder);
  return { folder, settings, pidFile: join(folder, 'var', 'jobd.pid') };
}

describe('jobd process', () => {
  it('writes its pidfile, refuses a second live jobd (exit 4), stops on SIGTERM (exit 0) and removes the pidfile', async () => {
    const { settings, pidFile } = harnessSettings();
    const env = { JOBD_DATABASE: testDbName('jobd_pid') };
    const first = new Proc('jobd', ['--settings', settings], { env });
    try {
      const started = JSON.parse(await first.waitForLine('"msg":"jobd started"')) as Record<string, unknown>;
      expect(started).toMatchObject({
        version: expect.any(String),
        workerId: expect.any(String),
        database: env.JOBD_DATABASE,
      });
      expect(started.concurrency).toBeGreaterThanOrEqual(1);
      expect(readFileSync(pidFile, 'utf8').trim()).toBe(String(first.pid));

      const second = await run('jobd', ['--settings', settings], { env });
      expect(second.code).toBe(4);
      expect(second.stderr).toContain(`jobd is already running with pid ${first.pid}`);
      expect(readFileSync(pidFile, 'utf8').trim()).toBe(String(first.pid));
    } finally {
      const exit = await first.stop('SIGTERM');
      expect(exit.code).toBe(0);
    }
    expect(first.stdout).toContain('"msg":"jobd stopped"');
    expect(existsSync(pidFile)).toBe(false);
  });

  it('takes over a stale pidfile with a warning', async () => {
    const { settings, pidFile } = harnessSettings();
    const stale = await deadPid();
    mkdirSync(join(pidFile, '..'), { recursive: true });
    writeFileSync(pidFile, `${stale}\n`);
    const p = new Proc('jobd', ['--settings', settings], {
      env: { JOBD_DATABASE: testDbName('jobd_stale') },
    });
    try {
      const warning = await p.waitForLine('taking it over');
      expect(warning).toContain(`pid ${stale}`);
      expect(JSON.parse(warning)).toMatchObject({ level: 'warn' });
      await p.waitForLine('"msg":"jobd started"');
      expect(readFileSync(pidFile, 'utf8').trim()).toBe(String(p.pid));
    } finally {
      expect((await p.stop('SIGINT')).code).toBe(0);
    }
    expect(existsSync(pidFile)).toBe(false);
  });

  it('--version and --help exit 0', async () => {
    const v = await run('jobd', ['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const h = await run('jobd', ['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('--settings');
  });
});

describe('jobctl and the embedded database', () => {
  it('reaches a running jobd’s embedded server, and starts one in-process when no daemon runs', async () => {
    const port = await freePort();
    const folder = tempDir('embedded');
    const settings = writeSettings({ mongoUri: 'embedded', dataDir: './var', embedded: { port } }, folder);

    // No daemon: jobctl opens the embedded database itself; what it writes is on disk afterwards.
    const enq = await run('jobctl', [
      'enqueue',
      'echo',
      '--params',
      '{"x":1}',
      '--delay',
      '3600000',
      '--json',
      '--settings',
      settings,
    ]);
    expect(enq.stderr).toBe('');
    expect(enq.code).toBe(0);
    const { id } = JSON.parse(enq.stdout) as { id: string };
    const alone = await run('jobctl', ['ping', '--json', '--settings', settings]);
    expect(JSON.parse(alone.stdout)).toMatchObject({ ok: true, backend: 'embedded (in-process)' });

    const daemon = new Proc('jobd', ['--settings', settings]);
    try {
      await daemon.waitForLine('"msg":"jobd started"');
      const ping = await run('jobctl', ['ping', '--json', '--settings', settings]);
      expect(JSON.parse(ping.stdout)).toMatchObject({ ok: true, backend: 'embedded (daemon)' });
      const shown = await run('jobctl', ['show', id, '--json', '--settings', settings]);
      expect(shown.code).toBe(0);
      expect(JSON.parse(shown.stdout)).toMatchObject({ job: { _id: id, state: 'queued' } });

      // Another port, same data folder: nothing listens there, and the folder is held by the daemon.
      const otherPort = await freePort();
      const held = await run('jobctl', ['status', '--settings', settings], {
        env: { JOBD_EMBEDDED__PORT: String(otherPort) },
      });
      expect(held.code).toBe(1);
      expect(held.stderr).toContain(`nothing listens on 127.0.0.1:${otherPort}`);
      expect(held.stderr).toContain(join(folder, 'var', 'db'));
    } finally {
      expect((await daemon.stop()).code).toBe(0);
    }
  });
});
