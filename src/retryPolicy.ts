/**
 * What happens after a failed attempt: a pure function of (attempt, policy, random), so tests pin it
 * exactly. Exponential backoff with a cap; `jitter` of the delay is randomised downwards. The worker
 * (a handler failed) and the rescuer (a lease expired) both decide through failedAttempt().
 */
import { isDoNotRetry } from './errors.js';
import type { JobDoc, JobTypeDefinition, RetryPolicy, SerializedError } from './types.js';

/** Errors that fail a job at once: retrying them would fail the same way. */
const NEVER_RETRIED_CODES: ReadonlySet<string> = new Set([
  'JOBD_UNKNOWN_JOB_TYPE',
  'JOBD_UNENCODABLE_RESULT',
  'JOBD_OUTCOME_REFUSED',
]);

/** Delay before the next attempt after `attempt` (1-based) failed. */
export function backoffMs(attempt: number, policy: RetryPolicy, random: number): number {
  const n = Math.max(1, Math.floor(attempt));
  const raw = policy.baseMs * Math.pow(policy.factor, n - 1);
  const capped = Math.min(policy.capMs, Number.isFinite(raw) ? raw : policy.capMs);
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  const r = Math.min(1, Math.max(0, random));
  return Math.max(0, Math.round(capped * (1 - jitter * r)));
}

export type RetryDecision =
  { retry: true; delayMs: number } | { retry: false; why: 'do-not-retry' | 'attempts-exhausted' };

export function decideRetry(opts: {
  attempt: number;
  maxAttempts: number;
  error: SerializedError;
  policy: RetryPolicy;
  random: number;
}): RetryDecision {
  if (
    isDoNotRetry(opts.error) ||
    (opts.error.code !== undefined && NEVER_RETRIED_CODES.has(opts.error.code))
  ) {
    return { retry: false, why: 'do-not-retry' };
  }
  if (opts.attempt >= opts.maxAttempts) return { retry: false, why: 'attempts-exhausted' };
  return { retry: true, delayMs: backoffMs(opts.attempt, opts.policy, opts.random) };
}

/** A job type's retry settings (the global defaults stand in for a type this daemon does not know). */
export type RetrySettings = Pick<JobTypeDefinition, 'retry' | 'maxAttempts'>;

export function retrySettingsFor(
  config: { jobTypes: Record<string, RetrySettings>; defaults: RetrySettings },
  type: string,
): RetrySettings {
  return config.jobTypes[type] ?? config.defaults;
}

/**
 * The one retry-or-fail decision for a failed attempt of `job` (attempts were counted at claim, so
 * `job.attempts` is the attempt that failed). A job's own maxAttempts wins over its type's.
 */
export function failedAttempt(
  job: Pick<JobDoc, 'attempts' | 'maxAttempts'>,
  error: SerializedError,
  settings: RetrySettings,
  random: number,
): RetryDecision {
  return decideRetry({
    attempt: job.attempts,
    maxAttempts: job.maxAttempts ?? settings.maxAttempts,
    error,
    policy: settings.retry,
    random,
  });
}
