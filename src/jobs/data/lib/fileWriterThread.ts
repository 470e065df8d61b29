/**
 * Small files created on a second thread, so the kernel's work of creating them (most of what a small
 * file costs) overlaps with reading, inflating and checking the next entries on the job's thread.
 * One thread writes them one after another, in the order given: never two creations at once in one
 * directory (their waiters spin on its lock). Each file is created exclusively ('wx': never through a
 * symlink, never over something that appeared), written whole, given its mtime, and closed.
 *
 * The thread runs a few lines of plain JavaScript with Node's own modules only (no jobd module, no
 * TypeScript loader): it starts in a few milliseconds, the same from the sources and from dist/.
 */
import { Worker } from 'node:worker_threads';

const THREAD_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const written = new Int32Array(workerData.written);
const { closeSync, futimesSync, openSync, writeSync } = require('node:fs');
parentPort.on('message', (m) => {
  const data = Buffer.from(m.buf);
  const n = m.paths.length;
  let i = 0;
  try {
    for (; i < n; i++) {
      const at = m.nums[i * 4], len = m.nums[i * 4 + 1], mtime = m.nums[i * 4 + 3];
      const fd = openSync(m.paths[i], 'wx', m.nums[i * 4 + 2]);
      try {
        for (let off = 0; off < len; ) off += writeSync(fd, data, at + off, len - off);
        if (mtime === mtime) futimesSync(fd, mtime, mtime);
      } finally {
        closeSync(fd);
      }
      Atomics.add(written, 0, 1);
    }
    parentPort.postMessage({ buf: m.buf }, [m.buf]);
  } catch (err) {
    parentPort.postMessage({
      buf: m.buf,
      error: { message: err.message, code: err.code, errno: err.errno, syscall: err.syscall, path: m.paths[i] },
    }, [m.buf]);
  }
});
`;

/** Bytes of file data sent to the thread at once (a file larger than this is not given to it). */
export const BATCH_BYTES = 4 << 20;
/** Files sent at once, at most. */
const BATCH_FILES = 256;
/** Batches with the thread at once: one it writes, one queued, while the next is filled here. */
const IN_FLIGHT = 2;

/**
 * A thread left idle by the last extraction that finished, for the next one in this process: a new
 * thread costs 50-150 ms of CPU to start (Node's own modules compiled for it). Unreferenced, it never
 * keeps the process alive, and it stops after IDLE_MS without work.
 */
const pool: { idle: FileWriterThread | null } = { idle: null };
const IDLE_MS = 30_000;

interface Batch {
  buf: ArrayBuffer;
  bytes: Buffer;
  used: number;
  paths: string[];
  nums: number[];
}

export class FileWriterThread {
  private readonly worker: Worker;
  /** Buffers back from the thread, ready to fill (two: one filled here while the thread writes one). */
  private readonly free: ArrayBuffer[] = [];
  private batch: Batch | null = null;
  private inFlight = 0;
  private failed: Error | null = null;
  private waiter: (() => void) | null = null;
  private exited = false;
  private closing: Promise<unknown> | null = null;
  /** Files sent to the thread, and (shared, counted there as each is closed) files it has written. */
  private sent = 0;
  private readonly written = new Int32Array(new SharedArrayBuffer(4));
  private idleTimer: NodeJS.Timeout | undefined;

  /** The idle thread if there is one, else a new one. */
  static take(): FileWriterThread {
    const t = pool.idle;
    if (!t) return new FileWriterThread();
    pool.idle = null;
    clearTimeout(t.idleTimer);
    t.worker.ref();
    return t;
  }

  constructor() {
    this.worker = new Worker(THREAD_CODE, { eval: true, workerData: { written: this.written.buffer } });
    this.worker.on('message', (m: { buf: ArrayBuffer; error?: Record<string, unknown> }) => {
      this.inFlight -= 1;
      this.free.push(m.buf);
      if (m.error && !this.failed) {
        const e = m.error;
        this.failed = Object.assign(new Error(`${String(e.message)}`), {
          code: e.code,
          errno: e.errno,
          syscall: e.syscall,
          path: e.path,
        });
      }
      this.wake();
    });
    // Not an archive's fault: these keep a code, so they are not taken for a refusal.
    this.worker.on('error', (err) => {
      this.failed ??= Object.assign(new Error(`the file writer thread failed: ${err.message}`), {
        code: 'ERR_WORKER_FAILED',
      });
      this.wake();
    });
    this.worker.on('exit', () => {
      this.exited = true;
      if (pool.idle === this) pool.idle = null;
      this.failed ??= Object.assign(new Error('the file writer thread exited'), {
        code: 'ERR_WORKER_EXITED',
      });
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private wait(): Promise<void> {
    return new Promise((resolve) => (this.waiter = resolve));
  }

  private throwIfFailed(): void {
    if (this.failed) throw this.failed;
  }

  /**
   * Queues a file (`data.length` at most BATCH_BYTES); its bytes are copied before the returned
   * promise settles (at once when there is none). Returns a promise only when it must wait for room
   * in the queue; throws (or rejects) with the thread's error if a file before it failed.
   */
  add(path: string, data: Buffer, mode: number, mtimeSeconds: number): Promise<void> | undefined {
    this.throwIfFailed();
    if (this.batch && this.batch.used + data.length > BATCH_BYTES)
      return this.send().then(() => this.add(path, data, mode, mtimeSeconds));
    if (!this.batch) {
      const buf = this.free.pop() ?? new ArrayBuffer(BATCH_BYTES);
      this.batch = { buf, bytes: Buffer.from(buf), used: 0, paths: [], nums: [] };
    }
    const b = this.batch;
    data.copy(b.bytes, b.used);
    b.paths.push(path);
    b.nums.push(b.used, data.length, mode, mtimeSeconds);
    b.used += data.length;
    return b.paths.length >= BATCH_FILES ? this.send() : undefined;
  }

  /**
   * Has it files queued or being written? Read from its shared count, not from its messages: those
   * wait for this thread's next turn of the event loop.
   */
  get busy(): boolean {
    return (this.batch !== null && this.batch.paths.length > 0) || Atomics.load(this.written, 0) < this.sent;
  }

  /** Sends the batch being filled now, without waiting. */
  kick(): void {
    const b = this.batch;
    if (!b || b.paths.length === 0 || this.failed) return;
    this.batch = null;
    this.inFlight += 1;
    this.sent += b.paths.length;
    this.worker.postMessage({ buf: b.buf, paths: b.paths, nums: b.nums }, [b.buf]);
  }

  /** Sends the batch being filled; waits while more than IN_FLIGHT are with the thread. */
  private async send(): Promise<void> {
    this.kick();
    while (this.inFlight > IN_FLIGHT && !this.failed) await this.wait();
    this.throwIfFailed();
  }

  /** Resolves once every file queued so far exists (or rejects with the first failure). */
  async flush(): Promise<void> {
    await this.send();
    while (this.inFlight > 0 && !this.failed) await this.wait();
    this.throwIfFailed();
  }

  /**
   * Done with it once every file given was written (after `flush`): kept idle for the next
   * extraction if it is sound and no other is, else stopped. Not to be used again by the caller.
   */
  release(): Promise<void> {
    const queued = this.batch !== null && this.batch.paths.length > 0;
    if (this.failed || this.exited || this.inFlight > 0 || queued || pool.idle) return this.close();
    this.worker.unref();
    this.idleTimer = setTimeout(() => {
      if (pool.idle === this) pool.idle = null;
      void this.close();
    }, IDLE_MS).unref();
    pool.idle = this;
    return Promise.resolve();
  }

  /** Stops the thread; resolves once it has exited, so no file is created after this. */
  async close(): Promise<void> {
    if (this.exited) return;
    this.closing ??= this.worker.terminate();
    await this.closing;
  }
}
