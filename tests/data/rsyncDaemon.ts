/** A real rsync daemon on loopback for the tests: one writable module, started and stopped per suite. */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitUntil } from './helpers.js';

export interface RsyncDaemon {
  port: number;
  url(path?: string): string;
  stop(): Promise<void>;
}

/** With `auth`, the module admits only that user and password (a secrets file, mode 600). */
export async function startRsyncDaemon(
  moduleDir: string,
  confDir: string,
  auth?: { user: string; password: string },
): Promise<RsyncDaemon> {
  const port = await freePort();
  const conf = join(confDir, 'rsyncd.conf');
  const secrets = join(confDir, 'rsyncd.secrets');
  if (auth) await writeFile(secrets, `${auth.user}:${auth.password}\n`, { mode: 0o600 });
  await writeFile(
    conf,
    [
      'use chroot = no',
      'uid = root',
      'gid = root',
      `pid file = ${join(confDir, 'rsyncd.pid')}`,
      '[data]',
      `  path = ${moduleDir}`,
      '  read only = no',
      ...(auth ? [`  auth users = ${auth.user}`, `  secrets file = ${secrets}`] : []),
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn(
    'rsync',
    ['--daemon', '--no-detach', `--port=${port}`, '--address=127.0.0.1', `--config=${conf}`],
    {
      stdio: 'ignore',
    },
  );
  await waitUntil(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), resolve(true)));
        s.once('error', () => resolve(false));
      }),
    { what: `rsync daemon on port ${port}`, timeoutMs: 20_000 },
  );
  return {
    port,
    url: (path = '') => `rsync://${auth ? `${auth.user}@` : ''}127.0.0.1:${port}/data/${path}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}
