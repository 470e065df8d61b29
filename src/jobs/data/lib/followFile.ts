/**
 * The sha256 of a file another program is writing, read as it grows, and the file flushed to disk as it
 * goes. Reading it back and fsyncing it only after the program exited cost as much wall time as the
 * compression itself; beside it, both mostly overlap with the compressor's work and only the tail is
 * left at the end.
 *
 * The writer must only append (a compressor writing its stdout does): a read never goes past the size
 * the kernel has published, so the bytes hashed are the bytes written, and once the writer has exited a
 * last read to the end and a size check make the digest the whole file's.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { DataJobError } from '../../lib/errors.js';

const CHUNK = 1 << 20;
/** How long to wait for new bytes once the reader has caught up with the writer. */
const POLL_MS = 20;
/**
 * fdatasync after this many new bytes, in the background: the final one then has little left to do.
 * Each fdatasync of a growing file also commits the journal and flushes the disk's cache, so fewer,
 * larger steps cost less: against 8 MiB, 64 MiB packed 1 GiB in 8.0 s instead of 9.7 s (median of 6
 * alternating rounds, loaded machine), with less CPU time; 32 and 128 MiB did no better.
 */
const SYNC_EVERY = 64 << 20;

export interface Followed {
  sha256: string;
  bytes: number;
}

/**
 * Hashes `fh` from offset 0 while `writer` runs, then to the end; rejects with the writer's error if it
 * fails (nothing more is read then). `writer` must settle when the program writing the file has exited
 * (later work of the caller's, such as checks, belongs outside it, so the last flush and reads overlap
 * with it). Resolves once the whole file is hashed and on disk (fdatasync).
 */
export async function hashAndSyncWhileWritten(
  fh: FileHandle,
  writer: Promise<unknown>,
  syncEvery = SYNC_EVERY,
): Promise<Followed> {
  // An object, so the compiler does not narrow what the callbacks below change.
  const w: { state: 'running' | 'done' | 'failed'; lastSync: Promise<unknown> | null } = {
    state: 'running',
    lastSync: null,
  };
  let wake: (() => void) | null = null;
  // The last flush starts the moment the writer exits, beside the hash's last reads (from the page
  // cache, which write-back does not slow), not after them: once the writer is gone every byte it wrote
  // is in the page cache, and fdatasync writes out every dirty page of the file, whenever it started.
  void writer.then(
    () => {
      w.state = 'done';
      w.lastSync = fh.datasync().then(
        () => null,
        (err: unknown) => err,
      );
      wake?.();
    },
    () => void ((w.state = 'failed'), wake?.()),
  );
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(CHUNK);
  let pos = 0;
  let syncedTo = 0;
  let syncing: Promise<void> | null = null;
  let syncError: unknown = null;
  for (;;) {
    if (w.state === 'failed') break;
    // Seen before the read: a writer that had exited by then has every byte in the file.
    const last = w.state === 'done';
    const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
    if (bytesRead > 0) {
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
      if (!syncing && !w.lastSync && pos - syncedTo >= syncEvery) {
        const at = pos;
        syncing = fh.datasync().then(
          () => void ((syncedTo = at), (syncing = null)),
          (err: unknown) => void ((syncError ??= err), (syncing = null)),
        );
      }
      continue;
    }
    if (last) break;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => ((wake = null), resolve()), POLL_MS);
      wake = () => (clearTimeout(timer), (wake = null), resolve());
    });
  }
  await syncing;
  await writer; // its error, if it failed
  if (syncError) throw syncError;
  const { size } = await fh.stat();
  if (size !== pos) {
    throw new DataJobError('OutputChangedError', `the archive is ${size} bytes, ${pos} were hashed`, {
      retryable: true,
    });
  }
  const lastError = await w.lastSync; // started when the writer was seen done, which the loop waited for
  if (lastError) throw lastError;
  return { sha256: hash.digest('hex'), bytes: pos };
}
