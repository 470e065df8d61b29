/**
 * Running programs for dataset jobs. A program is started from an argument array (never a shell
 * string), in its own process group, with the parent-death signal set where `setpriv` exists so it
 * dies with the process that runs the job. Progress lines become `ctx.progress`; an abort stops the
 * whole group (SIGTERM, then SIGKILL after a grace) and waits for it to be gone; a failure keeps the
 * tail of stderr and is retryable or not by the tool's exit-code table.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { Duplex, type Readable, type Writable } from 'node:stream';
import type { CoreContext } from './context.js';
import { abortReason, ToolAbortedError, ToolFailedError, ToolMissingError } from './errors.js';
import { stopGroup } from './processGroup.js';
import type { ExitMeaning, ToolDef } from './toolTable.js';

export interface ProgressUpdate {
  percent: number;
  message?: string;
}

/** Turns one output line into a progress update, or undefined for lines that are not progress. */
export type ProgressParser = (line: string) => ProgressUpdate | undefined;

export interface ToolRunOptions {
  tool: ToolDef;
  args: string[];
  /** A path to the program instead of looking `tool.program` up on PATH. */
  program?: string;
  cwd?: string;
  /** Added to the inherited environment. */
  env?: Record<string, string>;
  /** 'pipe' gives `run.stdin` (a stream filter); default: no input. */
  stdin?: 'ignore' | 'pipe';
  /**
   * 'pipe' gives `run.stdout` to the caller; a number is a file descriptor the program writes to
   * directly (output that need not pass through this process), and so is a stream with one (another
   * program's stdin: the two programs then talk over one pipe); default: read as lines.
   */
  stdout?: 'lines' | 'pipe' | number | Writable;
  /** Which stream carries progress lines. Default: both. */
  progressFrom?: 'stdout' | 'stderr' | 'both';
  progress?: ProgressParser;
  /** Every line (after redaction) of stdout (in 'lines' mode) and stderr. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Strings removed from every line, the stderr tail and error messages (credentials). */
  secrets?: string[];
  /** SIGTERM → SIGKILL delay when stopping. Default 5 s. */
  killGraceMs?: number;
  /** How much of stderr is kept for the error. Default 8 KiB. */
  stderrTailBytes?: number;
  /**
   * Reads a failure before the exit-code table does (some tools give one code to a refused
   * connection and to a usage error: the stderr tells them apart). Undefined: the table decides.
   */
  classify?: (exitCode: number, stderrTail: string) => ExitMeaning | undefined;
}

export interface ToolResult {
  exitCode: number;
  stderrTail: string;
  durationMs: number;
}

export interface ToolRun {
  pid: number;
  stdin: Writable | null;
  stdout: Readable | null;
  /** Resolves on exit 0 once the group is gone; rejects with a ToolFailedError or ToolAbortedError. */
  done: Promise<ToolResult>;
  /** Stops the group as an abort does. */
  stop(reason?: string): Promise<void>;
}

const pathCache = new Map<string, string | null>();

/** Finds an executable on PATH (or checks an absolute path); null when absent. */
export function findProgram(program: string): string | null {
  if (isAbsolute(program) || program.includes('/')) return canExec(program) ? program : null;
  const key = `${process.env.PATH ?? ''}\0${program}`;
  const hit = pathCache.get(key);
  if (hit !== undefined) return hit;
  let found: string | null = null;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (dir && canExec(join(dir, program))) {
      found = join(dir, program);
      break;
    }
  }
  // Absent programs are not cached: an operator may install one while the daemon runs.
  if (found) pathCache.set(key, found);
  return found;
}

function canExec(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function redact(text: string, secrets: readonly string[] | undefined): string {
  if (!secrets) return text;
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('***');
  return out;
}

/** Splits a byte stream into lines on \n or \r (rsync and zstd redraw progress with \r). */
function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer): void; end(): void } {
  let rest = '';
  return {
    push(chunk) {
      const text = rest + chunk.toString('utf8');
      const parts = text.split(/\r\n|\r|\n/);
      rest = parts.pop() ?? '';
      if (rest.length > 65536) rest = rest.slice(-65536);
      for (const p of parts) if (p) onLine(p);
    },
    end() {
      if (rest) onLine(rest);
      rest = '';
    },
  };
}

/** Starts a program. Throws ToolMissingError at once when it is not installed. */
export function startTool(opts: ToolRunOptions, ctx: CoreContext): ToolRun {
  const { tool } = opts;
  const wanted = opts.program ?? tool.program;
  const program = findProgram(wanted);
  if (!program) throw new ToolMissingError(tool.name, wanted, tool.debianPackage);
  if (ctx.signal.aborted) throw new ToolAbortedError(tool.name, abortReason(ctx.signal));

  const graceMs = opts.killGraceMs ?? 5000;
  const tailMax = opts.stderrTailBytes ?? 8192;
  const setpriv = findProgram('setpriv');
  // setpriv sets PR_SET_PDEATHSIG, then execs the program (same pid): if the process running the job is
  // SIGKILLed, the program is killed too instead of running on beside a re-run.
  const [cmd, argv] = setpriv
    ? [setpriv, ['--pdeathsig', 'KILL', '--', program, ...opts.args]]
    : [program, opts.args];
  const started = Date.now();
  const child: ChildProcess = spawn(cmd, argv, {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdio: [
      opts.stdin === 'pipe' ? 'pipe' : 'ignore',
      typeof opts.stdout === 'number' || typeof opts.stdout === 'object' ? opts.stdout : 'pipe',
      'pipe',
    ],
    detached: true, // its own process group (setsid), so a stop reaches every process it started
  });
  const pid = child.pid;
  if (pid === undefined) {
    // spawn failed synchronously (rare: EAGAIN, ENOMEM); the 'error' event follows.
    child.on('error', () => {});
    throw new ToolFailedError({
      tool: tool.name,
      message: `${tool.name}: could not be started`,
      retryable: true,
      exitCode: null,
      signal: null,
      stderrTail: '',
    });
  }

  ctx.log(`${tool.name}: started`, { pid, program });
  let stderrTail = '';
  const progressFrom = opts.progressFrom ?? 'both';
  const handleLine = (raw: string, stream: 'stdout' | 'stderr'): void => {
    const line = redact(raw, opts.secrets);
    opts.onLine?.(line, stream);
    if (opts.progress && (progressFrom === 'both' || progressFrom === stream)) {
      const p = opts.progress(line);
      if (p) ctx.progress(Math.max(0, Math.min(100, p.percent)), p.message);
    }
  };
  const errLines = lineSplitter((l) => handleLine(l, 'stderr'));
  child.stderr!.on('data', (chunk: Buffer) => {
    stderrTail = (stderrTail + chunk.toString('utf8')).slice(-tailMax);
    errLines.push(chunk);
  });
  child.stderr!.on('end', () => errLines.end());
  if (opts.stdout === undefined || opts.stdout === 'lines') {
    const outLines = lineSplitter((l) => handleLine(l, 'stdout'));
    child.stdout!.on('data', (chunk: Buffer) => outLines.push(chunk));
    child.stdout!.on('end', () => outLines.end());
  }

  let stopping: Promise<void> | null = null;
  let abortedBy: string | null = null;
  const stop = (reason = 'stopped'): Promise<void> => {
    abortedBy ??= reason;
    stopping ??= stopGroup(pid, graceMs).then(() => undefined);
    return stopping;
  };
  const onAbort = (): void => void stop(abortReason(ctx.signal));
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  // An abort from inside a callback above (the 'started' log) came before the listener: honour it.
  if (ctx.signal.aborted) onAbort();

  const done = new Promise<ToolResult>((resolve, reject) => {
    let spawnError: Error | null = null;
    child.on('error', (err) => (spawnError = err));
    child.on('close', (code, signal) => {
      ctx.signal.removeEventListener('abort', onAbort);
      // Whatever the program left in its group goes with it: a tool's processes never outlive its run.
      void (stopping ?? stopGroup(pid, graceMs)).then(() => {
        const tail = redact(stderrTail, opts.secrets).trim();
        if (abortedBy !== null) return reject(new ToolAbortedError(tool.name, abortedBy));
        if (spawnError) {
          return reject(
            new ToolFailedError({
              tool: tool.name,
              message: `${tool.name}: could not be started: ${spawnError.message}`,
              retryable: true,
              exitCode: null,
              signal: null,
              stderrTail: tail,
            }),
          );
        }
        if (code === 0) return resolve({ exitCode: 0, stderrTail: tail, durationMs: Date.now() - started });
        reject(failure(tool, code, signal, tail, opts.classify));
      });
    });
  });
  return { pid, stdin: child.stdin, stdout: child.stdout, done, stop };
}

function failure(
  tool: ToolDef,
  code: number | null,
  signal: string | null,
  tail: string,
  classify?: ToolRunOptions['classify'],
): ToolFailedError {
  const lastLines = tail.split('\n').slice(-12).join('\n').slice(-2000);
  let what: string;
  let retryable: boolean;
  if (code === null) {
    what = `was killed by ${signal ?? 'a signal'}`;
    retryable = true; // the OOM killer or an operator: the next attempt may run
  } else {
    const m = classify?.(code, tail) ?? tool.exitCodes[code];
    retryable = m ? m.retryable : tool.otherRetryable;
    what = `exited with code ${code}${m ? ` (${m.meaning})` : ''}`;
  }
  return new ToolFailedError({
    tool: tool.name,
    message: `${tool.name} ${what}; ${retryable ? 'retryable' : 'not retryable'}${lastLines ? `; stderr: ${lastLines}` : ''}`,
    retryable,
    exitCode: code,
    signal,
    stderrTail: tail,
  });
}

/** Runs a program to the end. */
export async function runTool(opts: ToolRunOptions, ctx: CoreContext): Promise<ToolResult> {
  return startTool(opts, ctx).done;
}

/**
 * A program as a stream filter (stdin → stdout), e.g. `zstd -T0 -3`. The duplex goes in a pipeline;
 * `done` must be awaited too, for the exit code.
 */
export function toolFilter(
  opts: Omit<ToolRunOptions, 'stdin' | 'stdout'>,
  ctx: CoreContext,
): { duplex: Duplex; done: Promise<ToolResult>; pid: number; stop(reason?: string): Promise<void> } {
  const run = startTool({ ...opts, stdin: 'pipe', stdout: 'pipe' }, ctx);
  const duplex = Duplex.from({ writable: run.stdin!, readable: run.stdout! });
  // A filter that exits early makes writes fail with EPIPE; the exit code (from done) says why.
  run.stdin!.on('error', () => {});
  return { duplex, done: run.done, pid: run.pid, stop: run.stop };
}
