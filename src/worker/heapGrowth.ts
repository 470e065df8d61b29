/**
 * How far the daemon's V8 heap may grow past what is live before V8 collects it (worker.heapGrowthPercent).
 *
 * A busy daemon's live heap is small and steady (about 25 MB running no-op jobs), but part of what each
 * job allocates outlives two young-generation collections and is promoted, then dies in the old
 * generation. V8 lets the old generation fill with that garbage up to a limit it sets after each full
 * collection: live × a factor it derives from its GC and allocation speeds, up to 4 for a process with
 * a heap limit of gigabytes. For the daemon that meant an old generation of about 100 MB for 25 MB
 * live, reached only after some 20,000–30,000 jobs: RSS climbed from about 120 to 180–190 MB, then
 * stayed there. With a fixed factor of 1.5 it stays near 130 MB from the start, for more full
 * collections (each a few ms of pause, most of the marking on V8's helper threads) and no measurable
 * change in CPU per job.
 *
 * Only bin/jobd applies it: a program that embeds startDaemon() keeps its own V8 settings, unless it
 * calls applyHeapGrowth() itself (bench/peers/runners/jobd.mjs does, to measure what bin/jobd runs).
 */
import { setFlagsFromString } from 'node:v8';

/**
 * Sets V8's heap growing factor to 1 + percent/100 for the rest of this process. V8 reads the flag
 * each time it sets the next limit, so it applies from the next full collection. 0 changes nothing
 * (V8's own choice, or a `node --heap-growing-percent` given on the command line).
 */
export function applyHeapGrowth(percent: number): void {
  if (!Number.isInteger(percent) || percent < 0) {
    throw new RangeError(`heap growth percent must be a non-negative integer, got ${String(percent)}`);
  }
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
