/**
 * Real rclone remotes on loopback for the tests: `rclone serve webdav` or `rclone serve sftp` of a
 * folder, with a user and password, started and stopped by the test. The port is the one the server
 * reports (it listens on port 0), so no port is guessed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitUntil } from './helpers.js';

export const PASSWORD = 'Kx7-loopback-Pw9q';
export const USER = 'alice';

export interface RcloneServer {
  kind: 'webdav' | 'sftp';
  port: number;
  pid: number;
  /** The password as rclone config files hold it (obscured). */
  obscured: string;
  /** An rclone config section `[name]` for this server. */
  section(name: string): string;
  /** Writes a config file holding `section(name)`; returns its path. */
  writeConfig(path: string, name?: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startRcloneServer(kind: 'webdav' | 'sftp', dir: string): Promise<RcloneServer> {
  const proc: ChildProcess = spawn(
    'rclone',
    [
      'serve',
      kind,
      '--config',
      '/dev/null',
      // The tests change the served folder behind the server's back: no cached listings.
      '--dir-cache-time',
      '0s',
      '--addr',
      '127.0.0.1:0',
      '--user',
      USER,
      '--pass',
      PASSWORD,
      dir,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr!.on('data', (c: Buffer) => (log += c.toString()));
  const port = await waitUntil(
    () => {
      if (proc.exitCode !== null) throw new Error(`rclone serve ${kind} exited: ${log}`);
      const m = /(?:started on http:\/\/127\.0\.0\.1:|listening on 127\.0\.0\.1:)(\d+)/.exec(log);
      return m ? Number(m[1]) : undefined;
    },
    { what: `rclone serve ${kind} to listen`, timeoutMs: 30_000 },
  );
  const obscured = execFileSync('rclone', ['obscure', PASSWORD], { encoding: 'utf8' }).trim();
  const section = (name: string): string =>
    kind === 'webdav'
      ? `[${name}]\ntype = webdav\nurl = http://127.0.0.1:${port}/\nvendor = other\nuser = ${USER}\npass = ${obscured}\n`
      : `[${name}]\ntype = sftp\nhost = 127.0.0.1\nport = ${port}\nuser = ${USER}\npass = ${obscured}\n`;
  return {
    kind,
    port,
    pid: proc.pid!,
    obscured,
    section,
    writeConfig: async (path, name = 'lab') => {
      await writeFile(path, section(name), { mode: 0o600 });
      return path;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

/** A config file for a server that is not there (a closed port). */
export async function unreachableConfig(dirPath: string, port: number): Promise<string> {
  const obscured = execFileSync('rclone', ['obscure', PASSWORD], { encoding: 'utf8' }).trim();
  const path = join(dirPath, 'unreachable.conf');
  await writeFile(
    path,
    `[lab]\ntype = webdav\nurl = http://127.0.0.1:${port}/\nvendor = other\nuser = ${USER}\npass = ${obscured}\n`,
  );
  return path;
}
