/**
 * What the record-processing cores share: progress by bytes of the input file, a bad input line as a
 * job error that is not retried, and the job's abort as ToolAbortedError.
 */
import { stat } from 'node:fs/promises';
import type { CoreContext } from '../../lib/context.js';
import { asAbort, DataInputError } from '../../lib/errors.js';
import {
  readLineChunks,
  readRecords,
  RecordLineError,
  type LineChunk,
  type ReadOptions,
  type RecordAt,
} from '../records.js';

/** Streams an input file's records, reporting progress (by bytes) between `from` and `to` percent. */
export async function* recordsWithProgress(
  path: string,
  ctx: CoreContext,
  what: string,
  from = 0,
  to = 100,
): AsyncGenerator<RecordAt> {
  const opts = await progressOptions(path, ctx, what, from, to);
  try {
    yield* readRecords(path, opts);
  } catch (err) {
    throw asJobError(err, ctx, what);
  }
}

/** Streams an input file as chunks of whole lines, reporting progress as `recordsWithProgress` does. */
export async function* lineChunksWithProgress(
  path: string,
  ctx: CoreContext,
  what: string,
  from = 0,
  to = 100,
): AsyncGenerator<LineChunk> {
  const opts = await progressOptions(path, ctx, what, from, to);
  try {
    yield* readLineChunks(path, opts);
  } catch (err) {
    throw asJobError(err, ctx, what);
  }
}

async function progressOptions(
  path: string,
  ctx: CoreContext,
  what: string,
  from: number,
  to: number,
): Promise<ReadOptions> {
  const info = await stat(path);
  let shown = -1;
  if (!info.isFile()) {
    // A pipe has no size to measure against: the bytes read, at the step's first percent.
    return {
      signal: ctx.signal,
      onBytes: (bytes) => {
        const mb = Math.floor(bytes / 1e6);
        if (mb !== shown) {
          shown = mb;
          ctx.progress(from, `${what}: ${bytes} bytes read`);
        }
      },
    };
  }
  const size = info.size;
  return {
    signal: ctx.signal,
    onBytes: (bytes) => {
      const pct = Math.floor(from + ((to - from) * bytes) / Math.max(size, 1));
      if (pct !== shown) {
        shown = pct;
        ctx.progress(pct, `${what}: ${bytes} of ${size} bytes read`);
      }
    },
  };
}

/** A bad line fails the job for good (the file will not change by retrying); an abort stays an abort. */
export function asJobError(err: unknown, ctx: CoreContext, what: string): unknown {
  if (err instanceof RecordLineError) return new DataInputError(`${what}: ${err.message}`);
  return asAbort(err, ctx.signal, what);
}

/** A short text of a value for an error message. */
export function shortValue(v: unknown): string {
  const s = v === undefined ? '(missing)' : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
