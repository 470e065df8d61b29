/**
 * What happens after a failed attempt: a pure function of (attempt, policy, random), so tests pin it
 * exactly. Exponential backoff with a cap; `jitter` of the delay is randomised downwards.
 */
import { isDoNotRetry } from '../errors.js';
import type { RetryPolicy, SerializedError } from '../types.js';

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
  if (isDoNotRetry(opts.error) || opts.error.code === 'JOBD_UNKNOWN_JOB_TYPE') {
    return { retry: false, why: 'do-not-retry' };
  }
  if (opts.attempt >= opts.maxAttempts) return { retry: false, why: 'attempts-exhausted' };
  return { retry: true, delayMs: backoffMs(opts.attempt, opts.policy, opts.random) };
}
