/**
 * Runs bin/jobd and bin/jobctl as real subprocesses (they load dist/: build first). Tests wait on
 * process exit or on output lines, never on sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
/**
 * How long one jobd/jobctl run or awaited line may take before the test calls it hung. Generous: a
 * process start costs about 1 s of CPU, and a loaded 2-core machine stretches that many times over.
 */
const RUN_TIMEOUT_MS = 90_000;
export const BIN = { jobd: join(ROOT, 'bin/jobd'), jobctl: join(ROOT, 'bin/jobctl') };

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The parent's environment without JOBD_* settings, so the developer's shell cannot leak into a test. */
function cleanEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('JOBD_') && k !== 'STATE_DIRECTORY') env[k] = v;
  }
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
  /** Written to the process's stdin (which is otherwise closed). */
  input?: string;
}

/** Run to completion. */
export function run(bin: keyof typeof BIN, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [BIN[bin], ...args], {
      env: cleanEnv(opts.env ?? {}),
      cwd: opts.cwd ?? tmpdir(),
      stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${bin} ${args.join(' ')} did not finish in ${opts.timeoutMs ?? RUN_TIMEOUT_MS} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? RUN_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}

/** A long-running process whose output lines can be awaited. */
export class Proc {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  private lines: string[] = [];

  constructor(bin: keyof typeof BIN, args: string[], opts: RunOptions = {}) {
    this.child = spawn(process.execPath, [BIN[bin], ...args], {
      env: cleanEnv(opts.env ?? {}),
      cwd: opts.cwd ?? tmpdir(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      const text = d.toString();
      this.stdout += text;
      partial += text;
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) this.onLine(line);
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((res) => this.child.on('close', (code, signal) => res({ code, signal })));
  }

  get pid(): number {
    return this.child.pid!;
  }

  private onLine(line: string): void {
    this.lines.push(line);
    this.waiters = this.waiters.filter((w) => {
      if (!w.test(line)) return true;
      w.resolve(line);
      return false;
    });
  }

  /** Resolves with the first stdout line (seen or future) matching; rejects if the process exits first. */
  waitForLine(match: string | RegExp, timeoutMs = RUN_TIMEOUT_MS): Promise<string> {
    const test = (line: string): boolean =>
      typeof match === 'string' ? line.includes(match) : match.test(line);
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolveLine, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no line matching ${String(match)} within ${timeoutMs} ms\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        test,
        resolve: (line) => {
          clearTimeout(timer);
          resolveLine(line);
        },
      });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(
          new Error(
            `process exited (code ${code}, signal ${signal}) before a line matching ${String(match)}\nstdout: ${this.stdout}\nstderr: ${this.stderr}`,
          ),
        );
      });
    });
  }

  async stop(
    signal: NodeJS.Signals = 'SIGTERM',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

export function tempDir(label = 'cli'): string {
  return mkdtempSync(join(tmpdir(), `jobd-${label}-`));
}

/** Write a settings file into a fresh folder; returns its path. */
export function writeSettings(content: unknown, folder = tempDir()): string {
  const file = join(folder, 'settings.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

/** Parse jobd's JSON log lines. */
export function logLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
