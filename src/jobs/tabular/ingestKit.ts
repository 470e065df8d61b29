/**
 * What the ingestion job types share: running a core with the job's context (signal, progress, log)
 * after the write paths were checked again, and the schemas of their common fields.
 */
import type { TypedJobContext } from '../defineJobType.js';
import type { CoreContext } from '../lib/context.js';

/** Checks each write path right before the core writes (a symlink swapped in is refused), then runs it. */
export async function runIngestCore<I, R>(
  core: (input: I, ctx: CoreContext) => Promise<R>,
  input: I,
  ctx: TypedJobContext,
  writes: ReadonlyArray<string | undefined>,
): Promise<R> {
  for (const w of writes) if (w !== undefined) await ctx.checkWrite(w);
  return core(input, {
    signal: ctx.signal,
    progress: (percent, message) => ctx.progress(percent, message),
    log: (msg, extra) => ctx.logger.info(msg, extra),
  });
}
