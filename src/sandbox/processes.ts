/**
 * Starting and stopping sandbox children. Children are started `detached` so each leads its own
 * process group: a kill reaches the programs a handler started too, and a Ctrl-C meant for the
 * daemon does not reach the children behind its back.
 */
import { fork, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const fromSources = import.meta.url.endsWith('.ts');
const entryFile = fileURLToPath(new URL(fromSources ? './childEntry.cts' : './childEntry.cjs', import.meta.url));

export type Loader = 'node' | 'tsx';

/** Children need the tsx loader when jobd runs from its TypeScript sources or the handler is TypeScript. */
export function loaderFor(handler: string): Loader {
  return fromSources || /\.[cm]?tsx?$/.test(handler) ? 'tsx' : 'node';
}

let tsxUrl: string | undefined;
function execArgvFor(loader: Loader): string[] {
  if (loader === 'node') return [];
  // An absolute URL, so a job's cwd does not change what '--import tsx' resolves to.
  // (createRequire rather than import.meta.resolve, which vitest's module runner does not provide.)
  tsxUrl ??= pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  return ['--import', tsxUrl];
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The process could not be started at all. */
  spawnError?: Error;
}

export interface Child {
  proc: ChildProcess;
  pid: number | undefined;
  /** Resolves once the process has exited and its IPC channel is drained (all its messages delivered). */
  exited: Promise<ExitInfo>;
  /**
   * Like `exited`, but the callback can be withdrawn: a pooled child lives through thousands of
   * jobs, and a `.then` per job on a promise that stays pending would pile up closures.
   */
  onExit(cb: (info: ExitInfo) => void): () => void;
  hasExited(): boolean;
}

export function startChild(opts: {
  mode: 'pooled' | 'isolated';
  loader: Loader;
  stdio: StdioOptions;
  env: NodeJS.ProcessEnv;
  cwd?: string;
}): Child {
  const proc = fork(entryFile, [opts.mode, opts.loader === 'node' ? 'require' : 'import'], {
    execArgv: execArgvFor(opts.loader),
    env: opts.env,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    stdio: opts.stdio,
    serialization: 'advanced',
    detached: true,
  });
  let done = false;
  const listeners = new Set<(info: ExitInfo) => void>();
  const exited = new Promise<ExitInfo>((resolve) => {
    const finish = (info: ExitInfo): void => {
      if (done) return;
      done = true;
      resolve(info);
      for (const cb of listeners) cb(info);
      listeners.clear();
    };
    proc.on('error', (err) => {
      // 'error' also reports failed kill()/send(); only a process that never started ends here.
      if (proc.pid === undefined) finish({ code: null, signal: null, spawnError: err });
    });
    proc.once('exit', (code, signal) => {
      const info = { code, signal };
      // A message sent just before exiting may still be in the channel: wait for it to drain.
      if (proc.connected) proc.once('disconnect', () => setImmediate(() => finish(info)));
      else setImmediate(() => finish(info));
    });
  });
  const onExit = (cb: (info: ExitInfo) => void): (() => void) => {
    if (done) {
      void exited.then(cb);
      return () => {};
    }
    listeners.add(cb);
    return () => listeners.delete(cb);
  };
  return { proc, pid: proc.pid, exited, onExit, hasExited: () => done || proc.exitCode !== null || proc.signalCode !== null };
}

function signalGroup(child: Child, signal: NodeJS.Signals): void {
  const pid = child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      child.proc.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * SIGTERM to the child's process group, SIGKILL after `graceMs`; resolves once the child has exited.
 * Whatever is left of the group (programs the handler started) gets SIGKILL at the end.
 */
/** Resolves true when `p` settles first, false when the child exits first; nothing is left attached. */
export function untilOrExit(child: Child, p: Promise<unknown>): Promise<boolean> {
  return new Promise((resolve) => {
    const off = child.onExit(() => resolve(false));
    void p.then(() => {
      off();
      resolve(true);
    });
  });
}

export async function killChild(child: Child, graceMs: number): Promise<ExitInfo> {
  if (!child.hasExited()) signalGroup(child, 'SIGTERM');
  const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), Math.min(Math.max(0, graceMs), 2 ** 31 - 1));
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
    sweepGroup(child);
  }
}

/** SIGKILL to whatever remains of an exited child's process group. */
export function sweepGroup(child: Child): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // ESRCH: nothing left
  }
}
