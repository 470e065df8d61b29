/** The daemon's typed events. Tests await them; the CLI and metrics may listen later. */
import { EventEmitter } from 'node:events';
import type { HookName, JobDoc, JobId, SerializedError } from '../types.js';

interface JobRef {
  jobId: JobId;
  type: string;
  attempt: number;
}

export interface DaemonEvents {
  'daemon:started': { workerId: string; changeStreams: boolean };
  'daemon:stopping': { workerId: string; graceMs: number };
  'daemon:stopped': { workerId: string; requeued: number };
  'job:claimed': JobRef & { job: JobDoc };
  'job:completed': JobRef & { result: unknown };
  'job:retrying': JobRef & { error: SerializedError; runAt: Date; delayMs: number };
  'job:failed': JobRef & { error: SerializedError };
  /** The lease was gone (rescued or cancelled): the child was stopped and nothing was written. */
  'job:lost': JobRef & { stage: 'running' | 'settling' };
  /** Shutdown past grace: the job went back to queued, its attempt given back. */
  'job:requeued': JobRef;
  /** A parent waits for its children: back to waiting, its slot and child process freed. */
  'job:suspended': JobRef & { children: JobId[] };
  /** Its dependencies (or children) finished: waiting → queued. */
  'job:released': { jobId: JobId };
  /** A dependency (or child) failed for good: the job failed (policy fail) or was cancelled (skip). */
  'job:dependency-failed': { jobId: JobId; dependency: JobId; state: 'failed' | 'cancelled'; code: string };
  /** Cancelled because its parent was cancelled or failed by a child. */
  'job:cascade-cancelled': { jobId: JobId };
  'workflow:completed': { workflowId: string };
  'workflow:failed': { workflowId: string };
  'workflow:submitted': { workflowId: string };
  'workflow:cancelled': { workflowId: string; reason: string };
  'db:error': { op: string; error: unknown };
  'db:recovered': { op: string };
  rescue: { retrying: JobId[]; failed: JobId[] };
  'watch:fallback': { reason: string };
  /** The change stream is established: new claimable jobs wake the claim loop from now on. */
  'watch:ready': Record<string, never>;
  /** A schedule's fire time became a job (on this daemon; each fire time fires on one daemon only). */
  'schedule:fired': { schedule: string; fireAt: Date; fireKey: string; jobId: JobId; catchUp: boolean };
  /** A lifecycle hook threw or timed out; the job's outcome is unchanged. */
  'hook:failed': JobRef & { hook: HookName; error: SerializedError };
  /** The daemon read the paused queues (at start, on a change, on its periodic re-read) and they changed. */
  'queues:paused': { paused: string[] };
}

export type DaemonEventName = keyof DaemonEvents;

/** A small typed wrapper over EventEmitter, with `waitFor` for tests. */
export class TypedEmitter<E extends { [K in keyof E]: unknown }> {
  private readonly ee = new EventEmitter();
  constructor() {
    this.ee.setMaxListeners(0);
  }
  on<K extends keyof E & string>(name: K, fn: (payload: E[K]) => void): () => void {
    this.ee.on(name, fn);
    return () => this.ee.off(name, fn);
  }
  once<K extends keyof E & string>(name: K, fn: (payload: E[K]) => void): () => void {
    this.ee.once(name, fn);
    return () => this.ee.off(name, fn);
  }
  /** Whether anyone listens to `name`: callers skip building a payload nobody reads. */
  has<K extends keyof E & string>(name: K): boolean {
    return this.ee.listenerCount(name) > 0;
  }
  emit<K extends keyof E & string>(name: K, payload: E[K]): void {
    if (this.ee.listenerCount(name) === 0) return;
    // A throwing listener must not break the daemon's loops.
    for (const fn of this.ee.listeners(name)) {
      try {
        (fn as (p: E[K]) => void)(payload);
      } catch {
        /* listeners are observers */
      }
    }
  }
  /** Resolves with the first payload of `name` that passes `match`; rejects after timeoutMs if given. */
  waitFor<K extends keyof E & string>(
    name: K,
    match: (payload: E[K]) => boolean = () => true,
    opts: { timeoutMs?: number } = {},
  ): Promise<E[K]> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const off = this.on(name, (p) => {
        if (!match(p)) return;
        off();
        if (timer) clearTimeout(timer);
        resolve(p);
      });
      if (opts.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          off();
          reject(new Error(`timed out after ${opts.timeoutMs} ms waiting for ${name}`));
        }, opts.timeoutMs);
      }
    });
  }
}
