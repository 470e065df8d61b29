/**
 * Starting and stopping sandbox children. Children are started `detached` so each leads its own
 * process group: a kill reaches the programs a handler started too, and a Ctrl-C meant for the
 * daemon does not reach the children behind its back.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { deserialize, serialize } from 'node:v8';
import { decodeBody, encodeFrame } from './frames.cjs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ChildMessage, ParentMessage } from './protocol.js';
import { HelperChild, daemonId, type SpawnHelper } from './spawnHelper.js';

const v8 = (): { serialize: typeof serialize; deserialize: typeof deserialize } => ({
  serialize,
  deserialize,
});

const fromSources = import.meta.url.endsWith('.ts');
const entryFile = fileURLToPath(
  new URL(fromSources ? './childEntry.cts' : './childEntry.cjs', import.meta.url),
);

export type Loader = 'node' | 'tsx';

/** How long an exited isolated child's message pipe may stay open (held by a grandchild) before we stop reading. */
const DRAIN_MS = 200;

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
  /** The exit was not seen (the spawn helper that started the process died first): no code or signal. */
  lost?: boolean;
}

/** What of a process the sandbox uses: a ChildProcess, or the stand-in for one the spawn helper starts. */
export interface ProcessLike {
  readonly pid?: number | undefined;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  kill(signal?: NodeJS.Signals): boolean;
}

/** The daemon's end of an isolated child's fd-3 socket (a Duplex, or the helper's LateChannel). */
interface Channel {
  on(event: 'data', cb: (chunk: Buffer) => void): unknown;
  on(event: 'end' | 'close' | 'error', cb: () => void): unknown;
  end(data?: Buffer): unknown;
}

export interface Child<P extends ProcessLike = ProcessLike> {
  proc: P;
  /** Known once the process has started (with the spawn helper, a moment after startChild returns). */
  readonly pid: number | undefined;
  /** Resolves once the process has exited and its IPC channel is drained (all its messages delivered). */
  exited: Promise<ExitInfo>;
  /**
   * Like `exited`, but the callback can be withdrawn: a pooled child lives through thousands of
   * jobs, and a `.then` per job on a promise that stays pending would pile up closures.
   */
  onExit(cb: (info: ExitInfo) => void): () => void;
  hasExited(): boolean;
  onMessage(cb: (m: ChildMessage) => void): () => void;
  /** Throws when the message cannot be serialised. */
  send(m: ParentMessage): void;
}

/**
 * pooled children talk over Node's IPC channel (fork, 'advanced' serialization).
 * isolated children skip the IPC channel, whose set-up is a noticeable part of a short-lived
 * child's start-up: they get one stdio pipe, fd 3, which Node makes a Unix socketpair, so it carries
 * both ways: the job goes in (the daemon then shuts its side for writing, the child reads to EOF)
 * and the child's messages come back, both as length-prefixed frames (frames.cts): JSON when JSON
 * carries the message exactly, else v8 (the same structured-clone format), so a plain job's child
 * never loads `node:v8`. One socket rather than a stdin pipe and a message pipe: a socketpair, an
 * fd and a stream fewer per spawn. stdin is /dev/null.
 * `output` is where the child's stdout/stderr go: 'pipe', or a file descriptor.
 */
interface StartOptions {
  mode: 'pooled' | 'isolated';
  loader: Loader;
  /** Register the resolve hook that lets handlers `import 'jobd'` (childEntry.cts). */
  jobdHook: boolean;
  output: 'pipe' | number;
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** Isolated only: the spawn helper starts the child, its output appended to this file (not `output`). */
  helper?: { spawner: SpawnHelper; logFile: string };
}

export function startChild(opts: StartOptions & { mode: 'pooled' }): Child<ChildProcess>;
export function startChild(opts: StartOptions & { mode: 'isolated' }): Child;
export function startChild(opts: StartOptions): Child {
  // A child with the hook loads handlers through import(): the hook does not apply to require(esm).
  const args = [
    opts.mode,
    opts.loader === 'node' && !opts.jobdHook ? 'require' : 'import',
    ...(opts.jobdHook ? ['jobd-hook'] : []),
  ];
  const common = { env: opts.env, ...(opts.cwd ? { cwd: opts.cwd } : {}), detached: true };
  const isolated = opts.mode === 'isolated';
  const childArgs = [...execArgvFor(opts.loader), entryFile, ...args];
  const viaHelper = isolated ? opts.helper : undefined;
  const proc: ChildProcess | HelperChild = viaHelper
    ? viaHelper.spawner.spawn({
        file: process.execPath,
        args: childArgs,
        // Its parent is the helper; this tells it which process it works for (childEntry.cts).
        env: { ...opts.env, JOBD_SANDBOX_DAEMON: daemonId() },
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
        logFile: viaHelper.logFile,
        helperExecArgv: execArgvFor(fromSources ? 'tsx' : 'node'),
      })
    : isolated
      ? spawn(process.execPath, childArgs, {
          ...common,
          stdio: ['ignore', opts.output, opts.output, 'pipe'],
        })
      : fork(entryFile, args, {
          ...common,
          execArgv: execArgvFor(opts.loader),
          stdio: ['ignore', opts.output, opts.output, 'ipc'],
          serialization: 'advanced',
        });

  const messageListeners = new Set<(m: ChildMessage) => void>();
  const deliver = (m: ChildMessage): void => {
    for (const cb of [...messageListeners]) cb(m);
  };
  let send: (m: ParentMessage) => void;
  let channelDrained: (cb: () => void) => void;
  if (isolated) {
    const channel: Channel | null | undefined =
      proc instanceof HelperChild ? proc.channel : (proc.stdio[3] as Duplex | null | undefined);
    const reader = new FrameReader(deliver);
    let ended = false;
    const endWaiters: Array<() => void> = [];
    const ended$ = (): void => {
      if (ended) return;
      ended = true;
      reader.end();
      for (const w of endWaiters.splice(0)) w();
    };
    channel?.on('data', (chunk: Buffer) => reader.push(chunk));
    channel?.on('end', ended$);
    channel?.on('close', ended$);
    // EPIPE or ECONNRESET writing the job to a child that died first: its exit tells the rest.
    channel?.on('error', () => {});
    send = (m) => {
      let frame: Buffer;
      try {
        frame = encodeFrame(m, v8);
      } catch (err) {
        channel?.end(); // the child reads EOF and exits instead of waiting for a job
        throw err;
      }
      // end(): our side is shut for writing only; the child's messages are still read.
      channel?.end(frame);
    };
    channelDrained = (cb) => {
      // Once fd 3 has ended every message was delivered: the exit is final at once (process.nextTick,
      // not setImmediate, so the next job's spawn does not wait behind a turn of the event loop).
      if (ended || !channel) return void process.nextTick(cb);
      // A program the handler started may hold fd 3 open; everything the child wrote is readable by now.
      const t = setTimeout(() => ended$(), DRAIN_MS);
      endWaiters.push(() => {
        clearTimeout(t);
        process.nextTick(cb);
      });
    };
  } else {
    const p = proc as ChildProcess;
    p.on('message', deliver);
    send = (m) => {
      p.send(m);
    };
    channelDrained = (cb) => {
      if (p.connected) p.once('disconnect', () => setImmediate(cb));
      else setImmediate(cb);
    };
  }

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
    proc.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
      const lost = proc instanceof HelperChild && proc.lost;
      // A message sent just before exiting may still be in the channel: wait for it to drain.
      channelDrained(() => finish({ code, signal, ...(lost ? { lost } : {}) }));
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
  const onMessage = (cb: (m: ChildMessage) => void): (() => void) => {
    messageListeners.add(cb);
    return () => messageListeners.delete(cb);
  };
  return {
    proc,
    get pid() {
      return proc.pid;
    },
    exited,
    onExit,
    onMessage,
    send,
    hasExited: () => done || proc.exitCode !== null || proc.signalCode !== null,
  };
}

/**
 * Length-prefixed (UInt32BE) frames, tagged JSON or v8 (frames.cts). A frame of many megabytes arrives in thousands of
 * pipe reads: they are kept as a list and joined once the frame is complete, not re-joined per read.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Length of the frame being read, once its header is in. */
  private want: number | null = null;
  constructor(private readonly deliver: (m: ChildMessage) => void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    for (;;) {
      if (this.want === null) {
        if (this.size < 4) return;
        this.want = this.take(4).readUInt32BE(0);
      }
      if (this.size < this.want) return;
      const body = this.take(this.want);
      this.want = null;
      let m: ChildMessage;
      try {
        m = decodeBody(body, v8) as ChildMessage;
      } catch {
        continue; // a handler wrote garbage to fd 3; the job then ends without 'done' (crash)
      }
      this.deliver(m);
    }
  }

  end(): void {
    this.chunks = [];
    this.size = 0;
    this.want = null;
  }

  /** The next `n` buffered bytes (n <= size). */
  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.size = rest.length;
    return out;
  }
}

function signalGroup(child: Child, signal: NodeJS.Signals): void {
  const pid = child.pid;
  // Not started yet (the spawn helper has not answered): it gets the signal as it starts.
  if (pid === undefined) {
    if (child.proc instanceof HelperChild) child.proc.kill(signal);
    return;
  }
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

/**
 * SIGTERM to the child's process group, SIGKILL after `graceMs`; resolves once the child has exited.
 * Whatever is left of the group (programs the handler started) gets SIGKILL at the end.
 */

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
