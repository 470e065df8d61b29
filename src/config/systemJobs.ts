/**
 * jobd's own jobs: maintenance that must run exactly once across daemons runs as a job of a reserved
 * type, fired by a reserved schedule. The fire makes one job (unique fireKey), one daemon claims it
 * (atomic claim), and its lease, rescue and history are those of any job. The daemon runs these types
 * itself, not in a child (docs/operations.md, "Cleanup and retention").
 */
import type { JobTypeDefinition, ScheduleDefinition } from '../types.js';
import type { ResolvedConfig } from './types.js';

/** Job type and schedule names starting with this are jobd's own; settings may not define them. */
export const SYSTEM_PREFIX = 'jobd.';

export const RETENTION = 'jobd.retention';

export type SystemJob = 'retention';

/** Whether the retention settings delete anything (an age is set for some state). */
export function retentionEnabled(r: ResolvedConfig['retention']): boolean {
  return r.completed !== null || r.failed !== null || r.cancelled !== null;
}

/** The retention job type: one pass of cleanup by the retention ages, at most one at a time. */
export function retentionJobType(defaults: ResolvedConfig['defaults']): JobTypeDefinition {
  return {
    name: RETENTION,
    handler: `jobd:${RETENTION}`,
    system: 'retention',
    mode: defaults.mode,
    // A pass over millions of finished jobs takes minutes; one that takes hours is stuck.
    timeoutMs: 6 * 60 * 60_000,
    // The next fire does the rest; a failed pass is not retried on its own.
    maxAttempts: 1,
    priority: defaults.priority,
    concurrency: 1,
    retry: { ...defaults.retry },
  };
}

/** What a retention job is told: the age (ms) per finished state; states absent are kept. */
export interface RetentionParams {
  completed?: number;
  failed?: number;
  cancelled?: number;
}

export function retentionParams(r: ResolvedConfig['retention']): RetentionParams {
  return {
    ...(r.completed !== null ? { completed: r.completed } : {}),
    ...(r.failed !== null ? { failed: r.failed } : {}),
    ...(r.cancelled !== null ? { cancelled: r.cancelled } : {}),
  };
}

/**
 * Fires every retention.intervalMs with the ages in its params, so whichever daemon claims the job
 * applies the same ages; fires missed while every daemon was down are not made up.
 */
export function retentionSchedule(r: ResolvedConfig['retention']): ScheduleDefinition {
  return {
    everyMs: r.intervalMs,
    type: RETENTION,
    params: retentionParams(r),
    catchUp: 'skip',
    catchUpMax: 1,
  };
}
