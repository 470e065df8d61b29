/**
 * `bin/jobd` as a real child process, for tests that crash, stop, freeze and signal daemons.
 *
 *   const s = writeDaemonSettings({ mongoUri, database, worker: { leaseMs: 2000 } });
 *   const d = await startDaemonProcess(s);                  // waits for the "jobd started" log line
 *   await d.waitForLog((l) => l.msg === 'job completed' && l.jobId === id);
 *   d.signal('SIGKILL'); const exit = await d.exited;
 *
 * The daemon's stdout is pino JSON, one object per line; every line is parsed and kept, and tests wait
 * on lines (or on the exit), never on sleeps. `bin/jobd` runs the compiled dist/, so `npm run build`
 * must have run (`npm test` does).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = resolve(import.meta.dirname, '../..');
export const JOBD_BIN = join(ROOT, 'bin/jobd');
export const JOBCTL_BIN = join(ROOT, 'bin/jobctl');

/** Absolute path of a handler module in tests/fixtures/crash. */
export function crashFixture(name: string): string {
  return join(ROOT, 'tests/fixtures/crash', name);
}

/** A pino line as jobd writes it (`level` is the label: "debug", "info", "warn", "error", "fatal"). */
export interface LogLine {
  level: string | number;
  time: string | number;
  msg: string;
  [key: string]: unknown;
}

export type LogMatch = string | RegExp | ((line: LogLine) => boolean);

export interface JobTypeSettings {
  handler?: string;
  mode?: 'pooled' | 'isolated' | 'inline';
  timeoutMs?: number;
  maxAttempts?: number;
  priority?: number;
  concurrency?: number;
  memoryLimitMb?: number;
  retry?: { baseMs?: number; factor?: number; capMs?: number; jitter?: number };
}

export interface DaemonSettingsOptions {
  mongoUri: string;
  database: string;
  /** Folder for the settings file, dataDir, logs and pidfile; a fresh temp folder when absent. */
  dir?: string;
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  worker?: Record<string, unknown>;
  maintenance?: Record<string, unknown>;
  defaults?: Record<string, unknown>;
  jobTypes?: Record<string, JobTypeSettings>;
  /** Further top-level keys (e.g. embedded), written as given. */
  extra?: Record<string, unknown>;
}

export interface DaemonSettings {
  dir: string;
  file: string;
  pidFile: string;
  logDir: string;
  settings: Record<string, unknown>;
}

/**
 * Writes a settings file for a test daemon: its own dataDir/logDir/pidFile in a temp folder, short
 * lease and polling so crash tests finish quickly, small retry delays, and the given job types.
 */
export function writeDaemonSettings(o: DaemonSettingsOptions): DaemonSettings {
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'jobd-proc-'));
  mkdirSync(dir, { recursive: true });
  const dataDir = join(dir, 'var');
  const logDir = join(dir, 'logs');
  const pidFile = join(dir, 'jobd.pid');
  const settings: Record<string, unknown> = {
    mongoUri: o.mongoUri,
    database: o.database,
    dataDir,
    logDir,
    pidFile,
    logLevel: o.logLevel ?? 'info',
    worker: {
      concurrency: 4,
      claimBatchSize: 10,
      leaseMs: 2_000,
      pollMinMs: 20,
      pollMaxMs: 250,
      shutdownGraceMs: 5_000,
      killGraceMs: 300,
      progressIntervalMs: 100,
      ...o.worker,
    },
    ...(o.maintenance ? { maintenance: o.maintenance } : {}),
    defaults: {
      timeoutMs: 60_000,
      maxAttempts: 3,
      retry: { baseMs: 100, factor: 2, capMs: 2_000, jitter: 0 },
      ...o.defaults,
    },
    ...(o.jobTypes ? { jobTypes: o.jobTypes } : {}),
    ...o.extra,
  };
  const file = join(dir, 'settings.json');
  writeFileSync(file, `${JSON.stringify(settings, null, 2)}\n`);
  return { dir, file, pidFile, logDir, settings };
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface DaemonProcess {
  readonly pid: number;
  readonly child: ChildProcess;
  /** The settings it was started with (when started from writeDaemonSettings). */
  readonly settings: DaemonSettings | undefined;
  /** Resolves when the process has exited (pipes drained). */
  readonly exited: Promise<ExitInfo>;
  /** Every parsed stdout line so far. */
  lines(): LogLine[];
  /** stdout lines that were not JSON, and all of stderr. */
  text(): string;
  /** The worker id from the "jobd started" line (after startDaemonProcess). */
  workerId: string;
  /**
   * Resolves with the `nth` (default 1st) line matching `match`, counting lines already printed.
   * Rejects when the process exits first or after timeoutMs (default 30 s), with the output's tail.
   */
  waitForLog(match: LogMatch, opts?: { nth?: number; timeoutMs?: number }): Promise<LogLine>;
  signal(sig: NodeJS.Signals): void;
  /** Sends `sig` (default SIGTERM) unless it already exited; resolves with the exit. */
  stop(sig?: NodeJS.Signals): Promise<ExitInfo>;
  readonly alive: boolean;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function matcher(match: LogMatch): (l: LogLine) => boolean {
  if (typeof match === 'string') return (l) => l.msg === match;
  if (match instanceof RegExp) return (l) => match.test(l.msg);
  return match;
}

function assertBuilt(): void {
  const entry = join(ROOT, 'dist/cli/jobdMain.js');
  if (!existsSync(entry))
    throw new Error(`${entry} is missing: run \`npm run build\` before tests that start bin/jobd`);
}

/** JOBD_* variables of the test runner must not leak into a daemon's settings. */
function cleanEnv(extra: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('JOBD_')) env[k] = v;
  return { ...env, ...extra };
}

/** Spawns `bin/jobd --settings <file> [args]` and returns at once. */
export function spawnDaemon(opts: {
  settings?: DaemonSettings;
  settingsFile?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Echo output to stderr as it arrives (debugging); also on with JOBD_TEST_ECHO=1. */
  echo?: boolean;
}): DaemonProcess {
  assertBuilt();
  const file = opts.settings?.file ?? opts.settingsFile;
  const args = [JOBD_BIN, ...(file ? ['--settings', file] : []), ...(opts.args ?? [])];
  const child = spawn(process.execPath, args, {
    cwd: opts.settings?.dir ?? ROOT,
    env: cleanEnv(opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start ${JOBD_BIN}`);
  live.add(child);
  const echo = opts.echo ?? process.env.JOBD_TEST_ECHO === '1';

  const lines: LogLine[] = [];
  const other: string[] = [];
  const waiters = new Set<{ test: (l: LogLine) => boolean; left: number; resolve: (l: LogLine) => void }>();
  const onJson = (line: string): void => {
    if (echo) process.stderr.write(`[jobd ${child.pid}] ${line}\n`);
    let parsed: LogLine;
    try {
      const v = JSON.parse(line) as unknown;
      if (!v || typeof v !== 'object' || typeof (v as LogLine).msg !== 'string')
        throw new Error('not a log line');
      parsed = v as LogLine;
    } catch {
      other.push(line);
      return;
    }
    lines.push(parsed);
    for (const w of [...waiters]) {
      if (w.test(parsed) && --w.left === 0) {
        waiters.delete(w);
        w.resolve(parsed);
      }
    }
  };
  const onText = (line: string): void => {
    if (echo) process.stderr.write(`[jobd ${child.pid} stderr] ${line}\n`);
    other.push(line);
  };
  const stdoutDone = lineReader(child.stdout, onJson);
  const stderrDone = lineReader(child.stderr, onText);
  const exited = new Promise<ExitInfo>((resolveExit, rejectExit) => {
    child.once('error', rejectExit);
    child.once('exit', (code, signal) => {
      live.delete(child);
      void Promise.all([stdoutDone, stderrDone]).then(() => resolveExit({ code, signal }));
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const tail = (): string =>
    [...lines.slice(-15).map((l) => JSON.stringify(l)), ...other.slice(-15)].join('\n') || '(no output)';

  const waitForLog = (match: LogMatch, o: { nth?: number; timeoutMs?: number } = {}): Promise<LogLine> => {
    const test = matcher(match);
    const nth = o.nth ?? 1;
    const seen = lines.filter(test);
    if (seen.length >= nth) return Promise.resolve(seen[nth - 1]!);
    // Generous by default: a loaded 2-core machine stretches a child's start and a job's run many times.
    const timeoutMs = o.timeoutMs ?? 90_000;
    return new Promise<LogLine>((resolveLine, rejectLine) => {
      const timer = setTimeout(() => {
        waiters.delete(w);
        rejectLine(
          new Error(
            `jobd ${child.pid}: no log line #${nth} matching ${String(match)} within ${timeoutMs} ms; output tail:\n${tail()}`,
          ),
        );
      }, timeoutMs);
      const w = {
        test,
        left: nth - seen.length,
        resolve: (l: LogLine) => {
          clearTimeout(timer);
          resolveLine(l);
        },
      };
      waiters.add(w);
      void exited.then((info) => {
        if (!waiters.has(w)) return;
        waiters.delete(w);
        clearTimeout(timer);
        rejectLine(
          new Error(
            `jobd ${child.pid} exited (${info.signal ?? `code ${info.code}`}) before log line #${nth} matching ${String(match)}; output tail:\n${tail()}`,
          ),
        );
      });
    });
  };

  const d: DaemonProcess = {
    pid: child.pid,
    child,
    settings: opts.settings,
    exited,
    lines: () => lines,
    text: () => other.join('\n'),
    workerId: '',
    waitForLog,
    signal: (sig) => {
      if (!hasExited) child.kill(sig);
    },
    stop: async (sig = 'SIGTERM') => {
      if (!hasExited) child.kill(sig);
      return exited;
    },
    get alive() {
      return !hasExited;
    },
  };
  return d;
}

/** Starts a daemon and waits for its "jobd started" line (which names its worker id). */
export async function startDaemonProcess(
  settings: DaemonSettings,
  opts: { args?: string[]; env?: NodeJS.ProcessEnv; echo?: boolean; timeoutMs?: number } = {},
): Promise<DaemonProcess> {
  const d = spawnDaemon({ settings, ...opts });
  try {
    // A start is a Node process booting and connecting: on a starved machine that alone has taken
    // more than 30 s, so the wait is long (a daemon that fails to start exits, which ends it sooner).
    const started = await d.waitForLog('jobd started', { timeoutMs: opts.timeoutMs ?? 90_000 });
    d.workerId = String(started.workerId);
  } catch (err) {
    d.signal('SIGKILL');
    throw err;
  }
  return d;
}

/** SIGKILLs every daemon this helper started that still runs; resolves when they are gone. */
export async function killAllDaemons(): Promise<void> {
  await Promise.all(
    [...live].map(
      (c) =>
        new Promise<void>((done) => {
          if (c.exitCode !== null || c.signalCode !== null) return done();
          c.once('exit', () => done());
          // A SIGSTOPped process must be continued to act on anything but SIGKILL; SIGKILL works regardless.
          c.kill('SIGKILL');
        }),
    ),
  );
}

/** Runs a CLI (bin/jobctl, bin/jobd) to its end; resolves with exit code and output. */
export function runCli(
  bin: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  assertBuilt();
  return new Promise((resolveRun, rejectRun) => {
    const child = spawn(process.execPath, [bin, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: cleanEnv(opts.env),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', rejectRun);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}

/** True while a process with this pid exists (signal 0 probes without sending anything). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

function lineReader(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  rl.on('line', onLine);
  return new Promise((done) => rl.once('close', () => done()));
}
