/**
 * One retention pass: deletes finished jobs older than their state's age, with their events and log
 * files (the same code as `jobctl cleanup`). It runs as the job `jobd.retention`, fired by the
 * schedule of the same name with the ages in its params (src/config/systemJobs.ts), so one daemon
 * runs each pass.
 */
import type { RetentionParams } from '../config/systemJobs.js';
import { ValidationError } from '../errors.js';
import { cleanupJobs } from '../ops/cleanup.js';
import type { CleanupTotals, Store } from '../store/index.js';
import type { JobState } from '../types.js';

const STATES = ['completed', 'failed', 'cancelled'] as const;

/** The ages a retention job's params give, checked (a job written by hand may carry anything). */
export function retentionAges(params: unknown): Partial<Record<JobState, number>> {
  const p = (params ?? {}) as Record<string, unknown>;
  if (typeof p !== 'object' || Array.isArray(p))
    throw new ValidationError(
      `a retention job's params must be an object of ages in ms; got ${JSON.stringify(params)}`,
    );
  const out: Partial<Record<JobState, number>> = {};
  for (const [k, v] of Object.entries(p as RetentionParams)) {
    if (!(STATES as readonly string[]).includes(k) || typeof v !== 'number' || !(v >= 0))
      throw new ValidationError(
        `retention params.${k} = ${JSON.stringify(v)} is not allowed: completed, failed or cancelled, each an age in ms >= 0`,
      );
    out[k as JobState] = v;
  }
  return out;
}

export function retentionPass(
  store: Store,
  params: unknown,
  o: { logDir: string; now: Date },
): Promise<CleanupTotals> {
  return cleanupJobs(store, { olderThanMs: retentionAges(params), logDir: o.logDir, now: o.now });
}
