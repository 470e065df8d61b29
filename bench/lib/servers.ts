/**
 * Private Redis and PostgreSQL instances for the peers benchmark, from the system's packages:
 * each on a free loopback port with its data in a fresh temporary directory, stopped and removed
 * by stop(). PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (the
 * Debian package creates it), or as a system user created for the purpose when there is none.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { sleep } from './stats.js';

export interface BackingServer {
  name: 'redis' | 'postgresql';
  version: string;
  url: string;
  /** The server's main process: its CPU tree is the database's CPU. */
  pid: number;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;

/** Servers started and not yet stopped, including ones still starting: what an interrupt must stop. */
const live = new Set<() => Promise<void>>();

export async function stopAllServers(): Promise<void> {
  await Promise.all([...live].map((stop) => stop().catch(() => {})));
}

/** `stop` runs once however often it is called, and leaves the live set. */
function tracked(stop: () => Promise<void>): () => Promise<void> {
  let once: Promise<void> | null = null;
  const wrapped = (): Promise<void> => {
    once ??= stop().finally(() => live.delete(wrapped));
    return once;
  };
  live.add(wrapped);
  return wrapped;
}

function onPath(bin: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const file = join(dir, bin);
    if (dir && existsSync(file)) return file;
  }
  return null;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function exitOf(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    else proc.once('exit', () => resolve());
  });
}

/** Signal, wait up to `graceMs`, then SIGKILL and wait. */
async function stopProcess(proc: ChildProcess, pid: number, signal: NodeJS.Signals, graceMs = 20_000) {
  const exited = exitOf(proc);
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), graceMs)));
  if ((await Promise.race([exited, late])) === 'late') {
    for (const p of new Set([pid, proc.pid])) {
      try {
        if (p) process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await exited;
  }
  clearTimeout(timer);
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-15).join('\n');
  } catch {
    return '';
  }
}

/** Resolves once `check` returns true; throws (with the server's log tail) when the process exits or time runs out. */
async function waitReady(what: string, proc: ChildProcess, logFile: string, check: () => Promise<boolean>) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null)
      throw new Error(
        `${what} exited (${proc.exitCode ?? proc.signalCode}) while starting:\n${tail(logFile)}`,
      );
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`${what} was not ready within ${START_TIMEOUT_MS} ms:\n${tail(logFile)}`);
    await sleep(100);
  }
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    let got = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1_000, () => done(false));
    sock.once('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) done(got.startsWith('+PONG'));
    });
  });
}

/** redis-server without persistence, or null when the package is not installed. */
export async function startRedis(): Promise<BackingServer | null> {
  const bin = onPath('redis-server');
  if (!bin) return null;
  const version = /v=(\S+)/.exec(execFileSync(bin, ['--version'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  const dir = mkdtempSync(join(tmpdir(), 'jobd-peers-redis-'));
  const logFile = join(dir, 'redis.log');
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const proc = spawn(bin, [...args, '--dir', dir], {
    // Its own session: a Ctrl-C meant for the benchmark reaches it through stop(), in order.
    detached: true,
    stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')],
  });
  const stop = tracked(async () => {
    if (proc.pid) await stopProcess(proc, proc.pid, 'SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await waitReady('redis-server', proc, logFile, () => redisPing(port));
  } catch (err) {
    await stop();
    throw err;
  }
  return { name: 'redis', version, url: `redis://127.0.0.1:${port}`, pid: proc.pid!, stop };
}

/** The directory of initdb and postgres: on PATH, else Debian's /usr/lib/postgresql/<major>/bin. */
function postgresBinDir(): string | null {
  const initdb = onPath('initdb');
  if (initdb && existsSync(join(initdb, '..', 'postgres'))) return join(initdb, '..');
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) return null;
  const majors = readdirSync(base)
    .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return majors[0] ? join(base, majors[0], 'bin') : null;
}

/** As root: the user PostgreSQL runs as (existing `postgres`, else a system user created now). */
function postgresUser(): string | null {
  if (process.getuid?.() !== 0) return null;
  for (const user of ['postgres', 'jobd-bench']) {
    try {
      execFileSync('id', ['-u', user], { stdio: 'ignore' });
      return user;
    } catch {
      // no such user
    }
  }
  execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'jobd-bench']);
  return 'jobd-bench';
}

/** A PostgreSQL cluster (initdb, trust auth on loopback, default settings otherwise), or null when not installed. */
export async function startPostgres(): Promise<BackingServer | null> {
  const bin = postgresBinDir();
  if (!bin) return null;
  const user = postgresUser();
  const asUser = (cmd: string, args: string[]): [string, string[]] =>
    user ? ['runuser', ['-u', user, '--', cmd, ...args]] : [cmd, args];
  const version = execFileSync(join(bin, 'postgres'), ['--version'], { encoding: 'utf8' }).trim();
  const dir = mkdtempSync(join(tmpdir(), 'jobd-peers-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  if (user) {
    const id = (flag: string): number =>
      Number(execFileSync('id', [flag, user], { encoding: 'utf8' }).trim());
    chownSync(dir, id('-u'), id('-g'));
  }
  const [initCmd, initArgs] = asUser(join(bin, 'initdb'), [
    '-D',
    data,
    '-U',
    'postgres',
    '-A',
    'trust',
    '-E',
    'UTF8',
    '--no-sync', // only initdb's own files; the server keeps its default durability
  ]);
  try {
    execFileSync(initCmd, initArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const port = await freePort();
  const [cmd, args] = asUser(join(bin, 'postgres'), [
    '-D',
    data,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
  ]);
  const log = openSync(logFile, 'a'); // the server writes through the inherited descriptor
  const proc = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log] });
  /** postmaster.pid: line 1 the pid, line 8 the status ('ready' once it accepts connections). */
  const postmaster = (): { pid: number; ready: boolean } | null => {
    try {
      const lines = readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n');
      const pid = Number(lines[0]);
      return pid ? { pid, ready: lines[7]?.trim() === 'ready' } : null;
    } catch {
      return null;
    }
  };
  const stop = tracked(async () => {
    // SIGINT is PostgreSQL's fast shutdown: sessions are ended, a checkpoint is written, it exits.
    const pid = postmaster()?.pid ?? proc.pid;
    if (pid) await stopProcess(proc, pid, 'SIGINT');
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    await waitReady('postgres', proc, logFile, async () => postmaster()?.ready === true);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    name: 'postgresql',
    version,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    pid: postmaster()!.pid,
    stop,
  };
}
