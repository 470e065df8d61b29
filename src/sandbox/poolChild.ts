/**
 * One reusable child of the pool: its process, the jobs it holds, its output routing and its health.
 *
 * A child holds jobs in the order they were handed over and runs them one at a time in that order.
 * After each job it writes an end-of-job marker on stdout and stderr (synchronous pipe writes), so the
 * output before a job's marker is that job's, and the first job whose markers have not both arrived
 * is the one it runs: its timeout counts from when the job before it ended. Results come back in
 * batches over IPC ('results'); jobs handed over in the same turn of the event loop go out in one
 * message ('jobs').
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MarkerSplitter, type JobLog } from './jobLog.js';
import type { ChildProcess } from 'node:child_process';
import { startChild, type Child, type Loader } from './processes.js';
import {
  MARKER_NONCE_ENV,
  endOfJobMarker,
  type ChildMessage,
  type DoneMessage,
  type DroppedMessage,
  type HooksMessage,
  type JobMessage,
  type ProgressMessage,
} from './protocol.js';

type StreamName = 'stdout' | 'stderr';

/** What the run of a held job hears from the child. */
export interface HeldListener {
  /** It became the job the child runs (or will run first, once started). */
  started(): void;
  /** Its result, with the child's cumulative CPU before it started. */
  done(d: DoneMessage, cpuBaseMs: number | undefined): void;
  progress(m: ProgressMessage): void;
  hooks(m: HooksMessage): void;
  dropped(m: DroppedMessage): void;
  /** The job could not be handed over (its message cannot be serialised). */
  unsendable(err: unknown): void;
}

/** A job the child holds: queued, running, or finished and its markers or result not yet in. */
export class Held {
  /** performance.now() when it became the running job; undefined while queued. */
  startedAt: number | undefined;
  /** Both end-of-job markers arrived: the child finished it (or skipped it, dropped). */
  ended = false;
  /** Its run let go (settled): nothing more is routed to it; it leaves once it has ended. */
  left = false;
  readonly markers: Record<StreamName, boolean> = { stdout: false, stderr: false };
  private endWaiters: (() => void)[] = [];

  constructor(
    readonly msg: JobMessage,
    public log: JobLog | null,
    readonly listener: HeldListener,
    /** The first job of its handler in this child: its run time includes loading the handler's modules. */
    readonly first: boolean,
  ) {}

  /** Resolves once both markers arrived. */
  untilEnded(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((r) => this.endWaiters.push(r));
  }

  /** @internal */
  markEnded(): void {
    this.ended = true;
    const w = this.endWaiters;
    this.endWaiters = [];
    w.forEach((f) => f());
  }
}

export class PoolChild {
  readonly child: Child<ChildProcess>;
  state: 'idle' | 'busy' | 'retiring' = 'busy';
  jobsRun = 0;
  /** Jobs handed to it over its life (recycling counts these). */
  jobsAssigned = 0;
  /** Runs holding this child now (queued, running, or tidying up). */
  runs = 0;
  /** Cumulative CPU of the child after its last reported job (from 'ready' or the last result). */
  cpuBaseMs: number | undefined;
  /** performance.now() of its 'ready' message. */
  readyAt: number | undefined;
  /** Why this child must not run another job (set once). */
  unfit: string | null = null;
  lastRssBytes = 0;

  private held: Held[] = [];
  private readonly handlers = new Set<string>();
  private outbox: JobMessage[] = [];
  private outboxHeld: Held[] = [];
  private flushScheduled = false;
  private strayBytes = 0;

  constructor(
    readonly loader: Loader,
    /** Started with the resolve hook for the bare specifier `jobd` (see childEntry.cts). */
    readonly jobdHook: boolean,
    private readonly onUnfit: (pc: PoolChild, why: string, detail?: Record<string, unknown>) => void,
  ) {
    const nonce = randomUUID();
    this.child = startChild({
      mode: 'pooled',
      loader,
      jobdHook,
      output: 'pipe',
      env: { ...process.env, [MARKER_NONCE_ENV]: nonce },
    });
    const markerBuf = Buffer.from(endOfJobMarker(nonce));
    this.route('stdout', this.child.proc.stdout, markerBuf);
    this.route('stderr', this.child.proc.stderr, markerBuf);
    this.child.onMessage((m: ChildMessage) => this.onMessage(m));
    void this.child.exited.then(() => (this.held = []));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The job it runs now (or will run first): the first held job that has not ended. */
  running(): Held | undefined {
    return this.held.find((h) => !h.ended);
  }

  /** Hand a job over (sent with the others of this turn); it runs after those held already. */
  assign(msg: JobMessage, log: JobLog, listener: HeldListener): Held {
    const h = new Held(msg, log, listener, !this.handlers.has(msg.handler));
    this.handlers.add(msg.handler);
    const first = !this.running();
    this.held.push(h);
    this.jobsAssigned++;
    this.outbox.push(msg);
    this.outboxHeld.push(h);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
    if (first) this.start(h);
    return h;
  }

  /** Ask the child to take `h` out of its queue; the answer comes to its listener ('dropped'). */
  drop(h: Held): void {
    if (this.outboxHeld.includes(h)) {
      // Not sent yet: it never reaches the child.
      this.outbox.splice(this.outboxHeld.indexOf(h), 1);
      this.outboxHeld.splice(this.outboxHeld.indexOf(h), 1);
      this.remove(h);
      h.listener.dropped({ t: 'dropped', jobId: h.msg.jobId, ok: true });
      return;
    }
    try {
      this.child.send({ t: 'drop', jobId: h.msg.jobId });
    } catch {
      // channel closed: the child's exit settles the job
    }
  }

  /** The run of `h` settled: stop routing output to it; it leaves once its markers are in. */
  leave(h: Held): void {
    h.left = true;
    h.log = null;
    if (h.ended || this.child.hasExited()) this.remove(h);
    // A stream paused for the job's file never gets its 'drain' once the file is being closed.
    this.child.proc.stdout?.resume();
    this.child.proc.stderr?.resume();
  }

  /** Not to be reused, for an ordinary reason (nothing to warn about); retired once its jobs are released. */
  retireAfterJob(why: string): void {
    this.unfit ??= why;
  }

  markUnfit(why: string, detail?: Record<string, unknown>): void {
    if (this.unfit) return;
    this.unfit = why;
    this.onUnfit(this, why, detail);
  }

  /** Output of an exited child may still sit in the pipes; wait for them to close, briefly. */
  async drained(maxWaitMs: number): Promise<void> {
    const streams = [this.child.proc.stdout, this.child.proc.stderr].filter(
      (s): s is Readable => !!s && !s.readableEnded && !s.destroyed,
    );
    if (!streams.length) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(streams.map((s) => new Promise((r) => s.once('close', r)))),
      // A grandchild that inherited the pipe can keep it open forever.
      new Promise((r) => (timer = setTimeout(r, maxWaitMs))),
    ]);
    clearTimeout(timer);
  }

  /** Bytes of output seen outside any job. */
  get strayOutputBytes(): number {
    return this.strayBytes;
  }

  private start(h: Held): void {
    h.startedAt = performance.now();
    if (!h.left) h.listener.started();
  }

  private remove(h: Held): void {
    const i = this.held.indexOf(h);
    if (i >= 0) this.held.splice(i, 1);
  }

  private flush(): void {
    this.flushScheduled = false;
    const jobs = this.outbox;
    const held = this.outboxHeld;
    this.outbox = [];
    this.outboxHeld = [];
    if (jobs.length === 0 || this.child.hasExited()) return;
    try {
      this.child.send({ t: 'jobs', jobs });
      return;
    } catch {
      // One of them cannot be serialised: each alone, so only that one fails.
    }
    jobs.forEach((msg, i) => {
      const h = held[i]!;
      try {
        this.child.send({ t: 'jobs', jobs: [msg] });
      } catch (err) {
        const wasRunning = this.running() === h;
        this.remove(h);
        h.listener.unsendable(err);
        const next = this.running();
        if (wasRunning && next && next.startedAt === undefined) this.start(next);
      }
    });
  }

  private onMessage(m: ChildMessage): void {
    switch (m.t) {
      case 'results':
        for (const d of m.done) {
          const h = this.find(d.jobId);
          const base = this.cpuBaseMs;
          this.cpuBaseMs = d.usage.cpuMs;
          this.lastRssBytes = d.usage.rssBytes;
          this.jobsRun++;
          h?.listener.done(d, base);
        }
        break;
      case 'progress':
        this.find(m.jobId)?.listener.progress(m);
        break;
      case 'hooks':
        this.find(m.jobId)?.listener.hooks(m);
        break;
      case 'dropped':
        this.find(m.jobId)?.listener.dropped(m);
        break;
      case 'ready':
        this.cpuBaseMs = m.usage.cpuMs;
        this.readyAt = performance.now();
        break;
      case 'taint':
        this.markUnfit('unhandled rejection', { error: m.error });
        break;
      case 'done':
        break; // isolated children only
    }
  }

  private find(jobId: string | undefined): Held | undefined {
    return this.held.find((h) => h.msg.jobId === jobId && !h.left);
  }

  /** Both markers of `h` arrived: the next job starts. */
  private ended(h: Held): void {
    h.markEnded();
    if (h.left) this.remove(h);
    const next = this.running();
    if (next && next.startedAt === undefined) this.start(next);
  }

  private route(name: StreamName, stream: Readable | null, marker: Buffer): void {
    if (!stream) return;
    const splitter = new MarkerSplitter(marker);
    const resume = (): void => {
      this.child.proc.stdout?.resume();
      this.child.proc.stderr?.resume();
    };
    const emit = (buf: Buffer): void => {
      const h = this.held.find((x) => !x.markers[name]);
      if (!h) return this.stray(name, buf);
      const sink = h.log;
      if (sink && !sink.write(buf, resume)) {
        // Back-pressure up to the child: its synchronous pipe writes block until the file catches up.
        this.child.proc.stdout?.pause();
        this.child.proc.stderr?.pause();
      }
    };
    const onMarker = (): void => {
      const h = this.held.find((x) => !x.markers[name]);
      if (!h) return;
      h.markers[name] = true;
      if (h.markers.stdout && h.markers.stderr) this.ended(h);
    };
    stream.on('data', (chunk: Buffer) => splitter.push(chunk, emit, onMarker));
    stream.on('end', () => splitter.flush(emit));
    stream.on('error', () => {});
  }

  /** Output while no job runs: something a finished handler left behind. The child is recycled. */
  private stray(name: StreamName, buf: Buffer): void {
    this.strayBytes += buf.length;
    if (!this.unfit) {
      this.markUnfit('output outside a job', {
        stream: name,
        sample: buf.subarray(0, 512).toString('utf8'),
      } satisfies Record<string, unknown>);
    }
  }
}
