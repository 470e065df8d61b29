import { describe, expect, it } from 'vitest';
import { backoffMs, decideRetry, failedAttempt, retrySettingsFor } from '../../src/retryPolicy.js';
import { DoNotRetryError, serializeError } from '../../src/errors.js';
import type { RetryPolicy } from '../../src/types.js';

const policy: RetryPolicy = { baseMs: 1000, factor: 2, capMs: 10_000, jitter: 0.5 };
const plain = { name: 'Error', message: 'boom' };

describe('retry policy', () => {
  it('grows exponentially without jitter (random 0) and stops at the cap', () => {
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffMs(a, policy, 0))).toEqual([
      1000, 2000, 4000, 8000, 10_000, 10_000,
    ]);
  });

  it('jitter takes at most `jitter` of the delay away', () => {
    expect(backoffMs(1, policy, 1)).toBe(500);
    expect(backoffMs(3, policy, 0.5)).toBe(3000);
    expect(backoffMs(3, { ...policy, jitter: 0 }, 0.9)).toBe(4000);
  });

  it('clamps odd inputs instead of producing NaN or negative delays', () => {
    expect(backoffMs(0, policy, 0)).toBe(1000);
    expect(backoffMs(1, policy, 7)).toBe(500);
    expect(backoffMs(10_000, policy, 0)).toBe(10_000);
  });

  it('retries while attempts remain', () => {
    expect(decideRetry({ attempt: 1, maxAttempts: 3, error: plain, policy, random: 0 })).toEqual({
      retry: true,
      delayMs: 1000,
    });
    expect(decideRetry({ attempt: 2, maxAttempts: 3, error: plain, policy, random: 0 })).toEqual({
      retry: true,
      delayMs: 2000,
    });
  });

  it('fails when attempts are used up', () => {
    expect(decideRetry({ attempt: 3, maxAttempts: 3, error: plain, policy, random: 0 })).toEqual({
      retry: false,
      why: 'attempts-exhausted',
    });
  });

  it('DoNotRetryError fails at once, recognised by name or code as a plain object', () => {
    const asThrown = serializeError(new DoNotRetryError('bad input'));
    const byName = { name: 'DoNotRetryError', message: 'x' };
    const byCode = { name: 'Error', code: 'JOBD_DO_NOT_RETRY', message: 'x' };
    for (const error of [asThrown, byName, byCode]) {
      expect(decideRetry({ attempt: 1, maxAttempts: 5, error, policy, random: 0 })).toEqual({
        retry: false,
        why: 'do-not-retry',
      });
    }
  });

  it('an unknown job type is never retried', () => {
    const error = { name: 'UnknownJobTypeError', code: 'JOBD_UNKNOWN_JOB_TYPE', message: 'unknown' };
    expect(decideRetry({ attempt: 1, maxAttempts: 5, error, policy, random: 0 }).retry).toBe(false);
  });

  it("failedAttempt: a job's own maxAttempts wins over its type's; without one, the type's applies", () => {
    const settings = { retry: policy, maxAttempts: 2 };
    expect(failedAttempt({ attempts: 2, maxAttempts: 5 }, plain, settings, 0)).toEqual({
      retry: true,
      delayMs: 2000,
    });
    expect(failedAttempt({ attempts: 2, maxAttempts: null }, plain, settings, 0)).toEqual({
      retry: false,
      why: 'attempts-exhausted',
    });
  });

  it('retrySettingsFor: the global defaults stand in for a type the daemon does not know', () => {
    const known = { retry: policy, maxAttempts: 7 };
    const defaults = { retry: { ...policy, baseMs: 1 }, maxAttempts: 1 };
    const config = { jobTypes: { known }, defaults };
    expect(retrySettingsFor(config, 'known')).toBe(known);
    expect(retrySettingsFor(config, 'other')).toBe(defaults);
  });
});
