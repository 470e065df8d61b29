/**
 * Ships a running job's log file to the database (job_logs), so `jobctl logs` and the HTTP API read
 * the whole log from any host. It reads the file the sandbox writes (pooled children through the
 * daemon, isolated ones straight into it), from the size it had when the attempt began, every
 * worker.logShipMs; the last read happens after the child is gone and before the outcome is written,
 * so a reader that sees the job finished has every chunk. Chunks end at a line end where one exists,
 * so a credential is never split across two chunks, and every chunk is redacted before it is stored.
 * A write that fails is retried on the next tick with the same chunk id (stored once).
 */
import { statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Logger } from 'pino';
import { redact } from '../redact.js';
import { appendLogChunk, storedLogBytes, type Store } from '../store/index.js';
import type { JobId } from '../types.js';

export const LOG_STORE_DEFAULT_BYTES = 16 * 1024 * 1024;
export const LOG_SHIP_DEFAULT_MS = 250;
/** Largest chunk: well under MongoDB's 16 MiB document limit, small enough for a quick follow. */
const MAX_CHUNK = 256 * 1024;

export interface LogShipperOptions {
  store: Store;
  logger: Logger;
  jobId: JobId;
  attempt: number;
  /** The job's seq at this claim (see LogChunkDoc.run). */
  run: number;
  file: string;
  maxBytes: number;
  intervalMs: number;
  now(): Date;
}

/**
 * Called at least twice per job, and most jobs write no output (no file): a missing file must not
 * cost an exception with its stack trace, which made this the daemon's largest single item.
 */
function sizeOf(file: string): number {
  try {
    return statSync(file, { throwIfNoEntry: false })?.size ?? 0;
  } catch {
    return 0;
  }
}

/** Length of the prefix of `buf` that ends on a whole UTF-8 character. */
function wholeChars(buf: Buffer): number {
  let i = buf.length;
  let back = 0;
  while (i > 0 && back < 4 && (buf[i - 1]! & 0xc0) === 0x80) {
    i--;
    back++;
  }
  if (i === 0) return buf.length;
  const lead = buf[i - 1]!;
  const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return need === back + 1 || need === 1 ? buf.length : i - 1;
}

export class LogShipper {
  private readonly start: number;
  /** Bytes of this attempt's output already stored. */
  private shipped = 0;
  /** Stored for this job by earlier attempts (read once, lazily). */
  private earlier: number | null = null;
  private cut = false;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private warned = false;

  constructor(private readonly o: LogShipperOptions) {
    // Earlier attempts on this host appended to the same file: this attempt's output starts here.
    this.start = sizeOf(o.file);
    if (o.maxBytes > 0) this.timer = setInterval(() => this.tick(false), o.intervalMs);
    this.timer?.unref();
  }

  /**
   * Ships whatever is left, to the end of the file. Never rejects. `silent`: the attempt is known to
   * have written nothing (most jobs), so there is nothing left to read.
   */
  async finish(silent = false): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.o.maxBytes <= 0 || silent) return;
    this.tick(true);
    await this.running;
  }

  private tick(final: boolean): void {
    this.running = this.running.then(() => this.ship(final)).catch((err: unknown) => this.warn(err));
  }

  private warn(err: unknown): void {
    if (this.warned) return;
    this.warned = true;
    this.o.logger.warn(
      { jobId: this.o.jobId, err: redact(String((err as Error)?.message ?? err)) },
      'cannot store job output in the database (retried; the log file stays on this host)',
    );
  }

  private async ship(final: boolean): Promise<void> {
    const o = this.o;
    while (!this.cut) {
      const from = this.start + this.shipped;
      const size = sizeOf(o.file);
      if (size <= from) return;
      if (this.earlier === null) {
        const had = await storedLogBytes(o.store, o.jobId);
        this.earlier = had.bytes;
        this.cut = had.truncated;
        if (this.cut) return;
      }
      const buf = await this.read(from, Math.min(size - from, MAX_CHUNK));
      const nl = buf.lastIndexOf(0x0a);
      // Without a line end: a line still being written, unless the run is over or the line is huge.
      if (nl < 0 && !final && buf.length < MAX_CHUNK) return;
      const len = nl >= 0 ? nl + 1 : wholeChars(buf);
      if (len === 0) return;
      const room = o.maxBytes - this.earlier - this.shipped;
      if (room <= 0) {
        await this.markCut();
        return;
      }
      const part = buf.subarray(0, Math.min(len, room));
      const n = part.length < len ? wholeChars(part) : part.length;
      await appendLogChunk(o.store, {
        jobId: o.jobId,
        attempt: o.attempt,
        run: o.run,
        off: this.shipped,
        at: o.now(),
        text: redact(part.subarray(0, n).toString('utf8')),
        bytes: n,
      });
      this.shipped += n;
      if (n < len) await this.markCut();
    }
  }

  private async markCut(): Promise<void> {
    await appendLogChunk(this.o.store, {
      jobId: this.o.jobId,
      attempt: this.o.attempt,
      run: this.o.run,
      off: 0,
      at: this.o.now(),
      text: `\n[jobd: log truncated: the database keeps the first ${this.o.maxBytes} bytes of a job's output (worker.logStoreBytes); the whole log is in ${this.o.file} on the host that ran it]\n`,
      bytes: 0,
      truncated: true,
    });
    this.cut = true;
  }

  private async read(pos: number, len: number): Promise<Buffer> {
    const fh = await open(this.o.file, 'r');
    try {
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
}
