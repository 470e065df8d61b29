/**
 * Isolated children started by a small helper process instead of by the daemon itself.
 *
 * Why: Node starts a child with fork() then exec(). fork() copies the page tables of the whole
 * process, and afterwards every page the parent writes takes a copy-on-write fault (with a TLB
 * flush on every core the process's threads run on). The daemon's process is large and busy (the
 * driver, the claim loop, often the embedded server with its data), so each isolated job cost it
 * several times what the start of the child costs a small process: measured on a 2-core machine,
 * 24–33 CPU-ms of the daemon's process per isolated no-op job with the daemon forking, 9–15 with
 * this helper (bench/throughput.ts's isolated phase). The helper stays small, so its forks stay cheap.
 *
 * What stays the same for the job: the child is started detached with the same arguments,
 * environment, cwd and log file; the daemon talks to it over the same fd-3 socket (the helper
 * passes its end over the IPC channel and keeps no copy), signals its process group by pid, and
 * samples it by pid. What differs: the child's parent process is the helper (process.ppid).
 *
 * Failures:
 * - The helper cannot be started, or dies with requests not yet answered: those children are
 *   started by the daemon itself, as without a helper, and the next request starts a new helper.
 * - The helper dies while children it started run: their sockets are the daemon's and carry on
 *   (a job still finishes and reports); their exits, which only the helper could see, are found by
 *   polling their pids. Such an exit has no code: `ExitInfo.lost`.
 * - The daemon dies: the helper's channel closes and it exits; children go on as the daemon's own
 *   children would (see spawnHelperEntry.cts).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { spawnLogged, type LoggedSpawn } from './spawnLogged.cjs';
import type { SandboxLogger } from './types.js';

const fromSources = import.meta.url.endsWith('.ts');
const helperFile = fileURLToPath(
  new URL(fromSources ? './spawnHelperEntry.cts' : './spawnHelperEntry.cjs', import.meta.url),
);

/** How often the pid of a child whose helper died is checked. */
const LOST_POLL_MS = 100;

export interface HelperSpawn extends LoggedSpawn {
  /** Arguments for Node itself when the helper must run from TypeScript sources (tsx). */
  helperExecArgv: string[];
}

/**
 * The daemon's view of a child the helper starts: what processes.ts uses of a ChildProcess (pid,
 * exitCode/signalCode, kill, 'exit' and 'error' events) and its fd-3 socket, which arrives with the
 * helper's answer. Writes and signals before then wait for it.
 */
export class HelperChild extends EventEmitter {
  pid: number | undefined = undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  /** The exit was not seen: the helper that started the child died first. */
  lost = false;
  readonly channel = new LateChannel();
  private pendingSignal: NodeJS.Signals | null = null;
  private settled = false;

  /** Signals the process; before its pid is known the strongest signal asked for waits for it. */
  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (this.settled) return false;
    if (this.pid === undefined) {
      if (this.pendingSignal !== 'SIGKILL') this.pendingSignal = signal;
      return true;
    }
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** The process is running: its pid and socket are known. */
  started(pid: number, socket: Duplex): void {
    this.pid = pid;
    const sig = this.pendingSignal;
    this.pendingSignal = null;
    if (sig) {
      // Stopped before it started (the job was cancelled meanwhile): the signal goes first. Started
      // detached, its process group is its pid (processes.ts signals groups).
      try {
        process.kill(-pid, sig);
      } catch {
        this.kill(sig);
      }
    }
    this.channel.attach(socket);
  }

  exited(code: number | null, signal: NodeJS.Signals | null, lost = false): void {
    if (this.settled) return;
    this.settled = true;
    this.exitCode = code;
    this.signalCode = signal;
    this.lost = lost;
    this.emit('exit', code, signal);
  }

  failed(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.channel.attach(null);
    this.emit('error', err);
  }
}

/**
 * The daemon's end of a child's fd-3 socket before the helper has handed it over: `end(frame)` waits
 * for it; 'data', 'end', 'close' and 'error' are the socket's once it is there.
 */
export class LateChannel extends EventEmitter {
  private socket: Duplex | null | undefined = undefined;
  private queued: { data?: Buffer } | null = null;

  end(data?: Buffer): void {
    if (this.socket === undefined) {
      this.queued = data ? { data } : {};
      return;
    }
    if (this.socket) this.socket.end(data);
  }

  /** The socket (null: the child never started; the channel then just closes). */
  attach(socket: Duplex | null): void {
    if (this.socket !== undefined) return;
    this.socket = socket;
    if (!socket) {
      this.emit('close');
      return;
    }
    for (const ev of ['data', 'end', 'close', 'error']) socket.on(ev, (x: unknown) => this.emit(ev, x));
    const q = this.queued;
    this.queued = null;
    if (q) socket.end(q.data);
  }
}

type Request = { child: HelperChild; spawn: HelperSpawn };

/** The helper process and the children it started that have not exited. */
export class SpawnHelper {
  private proc: ChildProcess | null = null;
  private nextId = 1;
  private readonly requests = new Map<number, Request>();
  private closed = false;

  constructor(private readonly log: SandboxLogger) {}

  /** The helper's pid while it runs (tests). */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Ask the helper to start a child; the returned object stands for it at once. */
  spawn(s: HelperSpawn): HelperChild {
    const child = new HelperChild();
    const proc = this.closed ? null : this.ensure(s.helperExecArgv);
    if (!proc) {
      directSpawn(child, s);
      return child;
    }
    const id = this.nextId++;
    this.requests.set(id, { child, spawn: s });
    this.refresh();
    try {
      proc.send({ t: 'spawn', id, file: s.file, args: s.args, env: s.env, cwd: s.cwd, logFile: s.logFile });
    } catch {
      // the channel closed: the helper's exit handler takes the request over
    }
    return child;
  }

  /** Stop the helper (children it started go on; the sandbox has killed them before). */
  close(): void {
    this.closed = true;
    const p = this.proc;
    this.proc = null;
    if (p?.connected) p.disconnect();
  }

  private ensure(execArgv: string[]): ChildProcess | null {
    if (this.proc) return this.proc;
    let p: ChildProcess;
    try {
      p = fork(helperFile, [], {
        execArgv,
        // Its own process group: a Ctrl-C meant for the daemon does not reach it.
        detached: true,
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        serialization: 'json',
      });
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message },
        'cannot start the spawn helper; the daemon starts children itself',
      );
      return null;
    }
    if (p.pid === undefined) {
      p.on('error', () => {});
      this.log.warn({}, 'cannot start the spawn helper; the daemon starts children itself');
      return null;
    }
    this.proc = p;
    p.on('error', () => {}); // failed sends end in 'exit'
    p.on('message', (m: HelperMessage, handle: Socket | undefined) => this.onMessage(m, handle));
    p.once('exit', (code, signal) => this.onHelperExit(p, code, signal));
    return p;
  }

  private onMessage(m: HelperMessage, handle: Socket | undefined): void {
    const r = this.requests.get(m.id);
    if (!r) {
      handle?.destroy();
      return;
    }
    if (m.t === 'spawned') {
      if (!handle) {
        // Cannot happen with a working helper; the child then has no way to get its job.
        this.requests.delete(m.id);
        try {
          process.kill(-m.pid, 'SIGKILL');
        } catch {
          // gone
        }
        r.child.failed(new Error('the spawn helper did not pass the child its socket'));
        return;
      }
      r.child.started(m.pid, handle);
    } else if (m.t === 'exit') {
      this.requests.delete(m.id);
      r.child.exited(m.code, m.signal);
    } else if (m.t === 'failed') {
      this.requests.delete(m.id);
      const err = new Error(m.message) as NodeJS.ErrnoException;
      if (m.code) err.code = m.code;
      r.child.failed(err);
    }
    this.refresh();
  }

  private onHelperExit(p: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.proc === p) this.proc = null;
    const left = [...this.requests.values()];
    this.requests.clear();
    if (left.length || !this.closed)
      this.log.warn(
        { pid: p.pid, code, signal, children: left.length },
        'the spawn helper exited; the next isolated child starts a new one',
      );
    for (const r of left) {
      if (r.child.pid === undefined)
        directSpawn(r.child, r.spawn); // never answered: started here
      else watchLost(r.child);
    }
  }

  /** The helper keeps the daemon's event loop alive only while children it started run. */
  private refresh(): void {
    const p = this.proc as (ChildProcess & { channel?: { ref(): void; unref(): void } }) | null;
    if (!p) return;
    if (this.requests.size) {
      p.ref();
      p.channel?.ref();
    } else {
      p.unref();
      p.channel?.unref();
    }
  }
}

type HelperMessage =
  | { t: 'spawned'; id: number; pid: number }
  | { t: 'exit'; id: number; code: number | null; signal: NodeJS.Signals | null }
  | { t: 'failed'; id: number; message: string; code?: string };

/** Start the child from the daemon's own process (no helper, or the helper died before answering). */
function directSpawn(child: HelperChild, s: HelperSpawn): void {
  let proc: ChildProcess;
  try {
    proc = spawnLogged(s);
  } catch (err) {
    child.failed(err as Error);
    return;
  }
  proc.once('error', (err) => {
    if (proc.pid === undefined) child.failed(err);
  });
  if (proc.pid === undefined) return;
  proc.once('exit', (code, signal) => child.exited(code, signal));
  child.started(proc.pid, proc.stdio[3] as Duplex);
}

let self: string | undefined;
/** This process as `pid:starttime`: what a child the helper started checks is alive (childEntry.cts). */
export function daemonId(): string {
  return (self ??= `${process.pid}:${startTime(process.pid) ?? ''}`);
}

/** Start time of a process (clock ticks after boot), or null when it is gone or a zombie. */
function startTime(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return f[0] === 'Z' ? null : Number(f[19]);
  } catch {
    return null;
  }
}

/** A child whose helper died: its exit is found by polling its pid (a new process on it is not it). */
function watchLost(child: HelperChild): void {
  const pid = child.pid!;
  const start = startTime(pid);
  if (start === null) return child.exited(null, null, true);
  const t = setInterval(() => {
    if (startTime(pid) !== start) {
      clearInterval(t);
      child.exited(null, null, true);
    }
  }, LOST_POLL_MS);
}
