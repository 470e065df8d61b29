/**
 * One run of one system: fork its runner (bench/peers/runners/protocol.mjs says what it does), take
 * a CPU snapshot of the database server's process tree and of the runner (the queue process) and
 * its descendants (the child processes) when it has enqueued and before it starts its worker, and
 * another when it reports every job completed.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { cpuDelta, cpuSnapshot, type CpuSnapshot } from './procCpu.js';
import { PEERS_DIR } from './peersInstall.js';
import type { PeerSystem } from './peerSystems.js';
import { round } from './stats.js';

export interface RunRequest {
  system: PeerSystem;
  round: number;
  node: { path: string; version: string };
  server: { url: string; pid: number };
  database: string;
  jobs: number;
  concurrency: number;
  chunk: number;
  maxSeconds: number;
  options: Record<string, unknown>;
  root: string;
}

export interface RunRecord {
  system: string;
  round: number;
  node: string;
  jobs: number;
  completed: number;
  /** The store held every job as completed when the clock stopped. */
  confirmed: boolean;
  /** Stopped by PEERS_RUN_MAX_S (or a job failed): the figures cover what finished. */
  capped: boolean;
  seconds: number;
  jobsPerSec: number;
  enqueueSeconds: number;
  cpuSeconds: { db: number; queue: number; children: number };
  cpuPer1000Jobs: { db: number; queue: number; children: number; total: number };
  error?: string;
}

type Message =
  | { t: 'ready'; enqueueSeconds: number }
  | { t: 'done'; seconds: number; completed: number; confirmed: boolean }
  | { t: 'error'; message: string };

/** The runner now running, so an interrupted benchmark can stop it. */
let current: ChildProcess | null = null;

export function killCurrentRunner(): void {
  current?.kill('SIGKILL');
}

class Inbox {
  private queue: Message[] = [];
  private waiting: ((m: Message) => void) | null = null;
  private exit: string | null = null;

  constructor(child: ChildProcess) {
    child.on('message', (m: Message) => this.push(m));
    child.on('exit', (code, signal) => {
      this.exit = `the runner exited (${code ?? signal})`;
      this.push(null);
    });
  }

  private push(m: Message | null): void {
    if (m) this.queue.push(m);
    const w = this.waiting;
    if (w && (this.queue.length || this.exit)) {
      this.waiting = null;
      w(this.queue.shift() ?? { t: 'error', message: this.exit! });
    }
  }

  next(): Promise<Message> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.push(null);
    });
  }
}

async function expect<T extends Message['t']>(inbox: Inbox, t: T): Promise<Extract<Message, { t: T }>> {
  const m = await inbox.next();
  if (m.t === 'error') throw new Error(m.message);
  if (m.t !== t) throw new Error(`runner protocol: expected '${t}', got '${m.t}'`);
  return m as Extract<Message, { t: T }>;
}

function exited(child: ChildProcess, ms: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function runOnce(req: RunRequest): Promise<RunRecord> {
  const { system } = req;
  const params = {
    root: req.root,
    url: req.server.url,
    database: req.database,
    jobs: req.jobs,
    concurrency: req.concurrency,
    chunk: req.chunk,
    maxSeconds: req.maxSeconds,
    options: req.options,
  };
  const child = fork(join(PEERS_DIR, 'runners', system.runner), [], {
    execPath: req.node.path,
    execArgv: [],
    env: { ...process.env, PEERS_RUN: JSON.stringify(params) },
    stdio: ['ignore', 2, 'inherit', 'ipc'],
  });
  current = child;
  const inbox = new Inbox(child);
  const base: RunRecord = {
    system: system.name,
    round: req.round,
    node: req.node.version,
    jobs: req.jobs,
    completed: 0,
    confirmed: false,
    capped: true,
    seconds: NaN,
    jobsPerSec: NaN,
    enqueueSeconds: NaN,
    cpuSeconds: { db: NaN, queue: NaN, children: NaN },
    cpuPer1000Jobs: { db: NaN, queue: NaN, children: NaN, total: NaN },
  };
  try {
    const ready = await expect(inbox, 'ready');
    const trees = { db: req.server.pid };
    const before: CpuSnapshot = cpuSnapshot(trees, child.pid);
    child.send({ t: 'go' });
    const done = await expect(inbox, 'done');
    const cpu = cpuDelta(before, cpuSnapshot(trees, child.pid));
    child.send({ t: 'stop' });
    const seconds = {
      db: cpu.trees.db ?? NaN,
      queue: cpu.split?.self ?? NaN,
      children: cpu.split?.children ?? NaN,
    };
    const per1000 = (s: number): number => round((s / Math.max(1, done.completed)) * 1000, 3);
    return {
      ...base,
      completed: done.completed,
      confirmed: done.confirmed,
      capped: !done.confirmed || done.completed < req.jobs,
      seconds: round(done.seconds, 3),
      jobsPerSec: round(done.completed / done.seconds, 1),
      enqueueSeconds: round(ready.enqueueSeconds, 2),
      cpuSeconds: { db: round(seconds.db), queue: round(seconds.queue), children: round(seconds.children) },
      cpuPer1000Jobs: {
        db: per1000(seconds.db),
        queue: per1000(seconds.queue),
        children: per1000(seconds.children),
        total: per1000(seconds.db + seconds.queue + seconds.children),
      },
    };
  } catch (err) {
    child.kill('SIGKILL');
    return { ...base, error: err instanceof Error ? err.message : String(err) };
  } finally {
    await exited(child, 60_000);
    current = null;
  }
}
