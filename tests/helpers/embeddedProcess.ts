/**
 * The standalone embedded server (`bin/jobd-embedded`) as a real child process, for tests that need to
 * kill a database and bring it back: durability, outages, restarts on the same port and data directory.
 *
 *   const db = await startEmbeddedProcess({ dataDir });          // waits for the "listening" line
 *   await db.kill();                                             // SIGKILL, resolves once it has exited
 *   const again = await startEmbeddedProcess({ dataDir, port: db.port });
 *
 * Readiness and shutdown are events (an output line, the exit), never sleeps. `bin/jobd-embedded`
 * runs the compiled dist/, so `npm run build` must have run (`npm test` does); a missing or stale
 * build is reported rather than silently tested.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/jobd-embedded');
const READY_RE = /jobd-embedded listening on (mongodb:\/\/\S+)/;

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Everything the process printed (stdout and stderr, interleaved by line). */
  output: string;
}

export interface EmbeddedProcessOptions {
  /** Data directory; omitted means the server's in-memory mode. */
  dataDir?: string;
  /** 0 (default) lets the server pick a free port; pass an earlier server's port to restart on it. */
  port?: number;
  /** Further command-line arguments, e.g. ['--compact-threshold-bytes', '65536']. */
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /**
   * Run under RLIMIT_FSIZE (util-linux prlimit): a write that would grow any file past this many bytes
   * fails with EFBIG, a real write failure that also binds root. Node ignores SIGXFSZ, so the process
   * sees the error rather than dying.
   */
  fileSizeLimitBytes?: number;
  /** Print the server's output to this process's stderr as it arrives (debugging). */
  echo?: boolean;
}

/** A spawned server whose outcome is not yet known: it may become ready or exit first. */
export interface EmbeddedChild {
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the URI once the server prints its listening line; rejects if it exits first. */
  readonly ready: Promise<string>;
  /** Resolves when the process has exited, whatever the reason. */
  readonly exited: Promise<ExitInfo>;
  output(): string;
  /** Resolves with the first line (already printed or still to come) matching `re`; rejects on exit. */
  waitForLine(re: RegExp): Promise<string>;
}

export interface EmbeddedProcess extends EmbeddedChild {
  readonly uri: string;
  readonly port: number;
  readonly dataDir: string | undefined;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** SIGKILL: no shutdown code runs. Resolves once the process is gone. */
  kill(): Promise<ExitInfo>;
  /** Waits for an exit that something else causes. */
  waitForExit(): Promise<ExitInfo>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Spawns the server and returns at once; use when the start is expected to fail (e.g. a locked directory). */
export function spawnEmbeddedProcess(options: EmbeddedProcessOptions = {}): EmbeddedChild {
  assertBuilt();
  const args = [BIN, '--port', String(options.port ?? 0)];
  if (options.dataDir !== undefined) args.push('--data-dir', options.dataDir);
  args.push(...(options.args ?? []));
  const command = options.fileSizeLimitBytes === undefined ? process.execPath : 'prlimit';
  if (options.fileSizeLimitBytes !== undefined) {
    // prlimit sets the limit on itself and then execs node: same pid, so signals reach the server.
    args.unshift(`--fsize=${options.fileSizeLimitBytes}`, '--', process.execPath);
  }
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);

  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const onLine = (line: string): void => {
    lines.push(line);
    if (options.echo) process.stderr.write(`[jobd-embedded ${child.pid}] ${line}\n`);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  };
  const stdoutDone = lineReader(child.stdout, onLine);
  const stderrDone = lineReader(child.stderr, onLine);

  const exited = new Promise<ExitInfo>((resolveExit, rejectExit) => {
    child.once('error', rejectExit);
    child.once('exit', (code, signal) => {
      live.delete(child);
      // Wait for the pipes to drain so the output is complete.
      void Promise.all([stdoutDone, stderrDone]).then(() =>
        resolveExit({ code, signal, output: lines.join('\n') }),
      );
    });
  });

  const waitForLine = (re: RegExp): Promise<string> => {
    const seen = lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolveLine, rejectLine) => {
      waiters.push({ re, resolve: resolveLine });
      void exited.then((info) => {
        const late = lines.find((l) => re.test(l));
        if (late !== undefined) resolveLine(late);
        else rejectLine(new EmbeddedExitedError(`before printing a line matching ${re}`, info));
      }, rejectLine);
    });
  };

  const ready = waitForLine(READY_RE).then((line) => (READY_RE.exec(line) as RegExpExecArray)[1] as string);
  ready.catch(() => {}); // observed by whoever awaits it; an unobserved failure is not a crash

  if (child.pid === undefined) throw new Error(`could not start ${BIN}`);
  return { pid: child.pid, child, ready, exited, output: () => lines.join('\n'), waitForLine };
}

/** Starts the server and waits until it accepts connections. */
export async function startEmbeddedProcess(options: EmbeddedProcessOptions = {}): Promise<EmbeddedProcess> {
  const c = spawnEmbeddedProcess(options);
  let uri: string;
  try {
    uri = await c.ready;
  } catch (err) {
    c.child.kill('SIGKILL');
    throw err;
  }
  const port = Number(new URL(uri).port);
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitInfo> => {
    if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill(signal);
    return c.exited;
  };
  return {
    ...c,
    uri,
    port,
    dataDir: options.dataDir,
    stop,
    kill: () => stop('SIGKILL'),
    waitForExit: () => c.exited,
  };
}

/** SIGKILLs every server this helper started that is still running (for afterAll/afterEach). */
export async function killAllEmbeddedProcesses(): Promise<void> {
  const waits = [...live].map(
    (c) =>
      new Promise<void>((done) => {
        if (c.exitCode !== null || c.signalCode !== null) return done();
        c.once('exit', () => done());
        c.kill('SIGKILL');
      }),
  );
  await Promise.all(waits);
}

export class EmbeddedExitedError extends Error {
  readonly exit: ExitInfo;
  constructor(what: string, exit: ExitInfo) {
    super(
      `jobd-embedded exited (${exit.signal ?? `code ${exit.code}`}) ${what}; its output:\n${exit.output || '(none)'}`,
    );
    this.name = 'EmbeddedExitedError';
    this.exit = exit;
  }
}

function lineReader(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): Promise<void> {
  if (!stream) return Promise.resolve();
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  rl.on('line', onLine);
  return new Promise((done) => rl.once('close', () => done()));
}

let checkedBuild = false;

/** Once per test file: a build that was current when the file started stays usable for its whole run. */
function assertBuilt(): void {
  if (checkedBuild) return;
  const entry = join(ROOT, 'dist/embedded/cli.js');
  if (!existsSync(entry)) {
    throw new Error(`${entry} is missing: run \`npm run build\` before tests that start bin/jobd-embedded`);
  }
  // The incremental build (tsc -b) does not rewrite outputs whose sources were only touched; its
  // build-info file is renewed on every build that found dist/ current, so it dates the build.
  const info = join(ROOT, 'dist/.tsbuildinfo');
  const built = Math.max(statSync(entry).mtimeMs, existsSync(info) ? statSync(info).mtimeMs : 0);
  const newest = newestMtime(join(ROOT, 'src/embedded'));
  if (newest.mtime > built) {
    throw new Error(
      `dist/ is older than ${newest.path}: run \`npm run build\` so bin/jobd-embedded runs the current code`,
    );
  }
  checkedBuild = true;
}

function newestMtime(dir: string): { path: string; mtime: number } {
  let best = { path: dir, mtime: 0 };
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    const candidate = entry.isDirectory() ? newestMtime(p) : { path: p, mtime: statSync(p).mtimeMs };
    if (candidate.mtime > best.mtime) best = candidate;
  }
  return best;
}
