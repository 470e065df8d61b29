/**
 * One reusable child of the pool: its process, its output routing and its health.
 *
 * Children run one job at a time, so their piped stdout/stderr belong to the current job until
 * the end-of-job marker the child writes on each stream before reporting 'done'.
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MarkerSplitter, type JobLog } from './jobLog.js';
import { startChild, type Child, type Loader } from './processes.js';
import { MARKER_NONCE_ENV, endOfJobMarker, type ChildMessage } from './protocol.js';

type StreamName = 'stdout' | 'stderr';

export class PoolChild {
  readonly child: Child;
  state: 'idle' | 'busy' | 'retiring' = 'busy';
  jobsRun = 0;
  /** Cumulative CPU of the child at the start of its next job (from 'ready' or the last 'done'). */
  cpuBaseMs: number | undefined;
  /** Why this child must not run another job (set once). */
  unfit: string | null = null;
  lastRssBytes = 0;

  private readonly sinks: Record<StreamName, JobLog | null> = { stdout: null, stderr: null };
  private markersLeft = 0;
  private markersSeen: (() => void) | null = null;
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
    this.child.onMessage((m: ChildMessage) => {
      if (m.t === 'ready') this.cpuBaseMs = m.usage.cpuMs;
      else if (m.t === 'taint') this.markUnfit('unhandled rejection', { error: m.error });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Route output to `log` until both end-of-job markers arrive; resolves when they have. */
  beginJob(log: JobLog): Promise<void> {
    this.sinks.stdout = log;
    this.sinks.stderr = log;
    this.markersLeft = 2;
    return new Promise((resolve) => (this.markersSeen = resolve));
  }

  /** Stop routing to the job (it ended, or the child died before its markers). */
  endJob(): void {
    this.sinks.stdout = null;
    this.sinks.stderr = null;
    this.markersLeft = 0;
    this.markersSeen = null;
    // A stream paused for the job's file never gets its 'drain' once the file is being closed.
    this.child.proc.stdout?.resume();
    this.child.proc.stderr?.resume();
  }

  /** Not to be reused, for an ordinary reason (nothing to warn about); retired once its job is released. */
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

  private route(name: StreamName, stream: Readable | null, marker: Buffer): void {
    if (!stream) return;
    const splitter = new MarkerSplitter(marker);
    const resume = (): void => {
      this.child.proc.stdout?.resume();
      this.child.proc.stderr?.resume();
    };
    const emit = (buf: Buffer): void => {
      const sink = this.sinks[name];
      if (sink) {
        if (!sink.write(buf, resume)) {
          // Back-pressure up to the child: its synchronous pipe writes block until the file catches up.
          this.child.proc.stdout?.pause();
          this.child.proc.stderr?.pause();
        }
      } else {
        this.stray(name, buf);
      }
    };
    const onMarker = (): void => {
      this.sinks[name] = null;
      if (this.markersLeft > 0 && --this.markersLeft === 0) {
        const seen = this.markersSeen;
        this.markersSeen = null;
        seen?.();
      }
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

  /** Bytes of output seen outside any job. */
  get strayOutputBytes(): number {
    return this.strayBytes;
  }
}
