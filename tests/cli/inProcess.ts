/**
 * jobctl run inside the test process: the same `run(argv)` that bin/jobctl's main() calls (commander
 * parsing, settings, the command, its output and the exit code it hands to process.exit), with
 * process.stdout/stderr captured and JOBD_* variables set for the call.
 *
 * A real process costs about 1 CPU-s of Node start-up; this costs a few ms once the modules are loaded.
 * Use it for the variants of a path whose process-level behaviour a real `run('jobctl', ...)` in the
 * same file already checks (the exit code as the process reports it, stdout through a pipe). Not for
 * stdin (`@-`, `--file -`), `--mongo-uri embedded`, TTY output or anything about the process itself.
 */
import { run as jobctlRun } from '../../src/cli/jobctl.js';
import type { RunResult } from './proc.js';

export interface InProcessOptions {
  env?: Record<string, string | undefined>;
}

let queue: Promise<unknown> = Promise.resolve();

/** Run jobctl with `args` in this process; calls are serialised (output capture is process-wide). */
export function runInProcess(args: string[], opts: InProcessOptions = {}): Promise<RunResult> {
  const next = queue.then(() => runNow(args, opts));
  queue = next.catch(() => undefined);
  return next;
}

async function runNow(args: string[], opts: InProcessOptions): Promise<RunResult> {
  // As proc.ts's cleanEnv: the developer's JOBD_* settings cannot leak in; the call's own are set.
  const saved = new Map<string, string | undefined>();
  const set = (k: string, v: string | undefined): void => {
    if (!saved.has(k)) saved.set(k, process.env[k]);
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  };
  for (const k of Object.keys(process.env)) {
    if (k.startsWith('JOBD_') || k === 'STATE_DIRECTORY') set(k, undefined);
  }
  for (const [k, v] of Object.entries(opts.env ?? {})) set(k, v);

  let stdout = '';
  let stderr = '';
  const capture = (stream: NodeJS.WriteStream, add: (s: string) => void) => {
    const original = stream.write;
    stream.write = ((chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
      add(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString());
      const done = typeof encoding === 'function' ? encoding : cb;
      if (typeof done === 'function') process.nextTick(done as () => void);
      return true;
    }) as typeof stream.write;
    return () => {
      stream.write = original;
    };
  };
  const restoreOut = capture(process.stdout, (s) => (stdout += s));
  const restoreErr = capture(process.stderr, (s) => (stderr += s));
  try {
    const code = await jobctlRun([process.execPath, 'jobctl', ...args]);
    return { code, signal: null, stdout, stderr };
  } finally {
    restoreOut();
    restoreErr();
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/**
 * A file's in-process jobctl calls: `here(args)` runs jobctl with `args` then `extra` (its settings,
 * its database), `hereJson(args)` adds `--json`, requires exit 0 and parses the output.
 */
export function inProcessCalls(extra: string[], opts: InProcessOptions = {}) {
  const here = (args: string[]): Promise<RunResult> => runInProcess([...args, ...extra], opts);
  const hereJson = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const r = await here([...args, '--json']);
    if (r.code !== 0) throw new Error(`jobctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  return { here, hereJson };
}
