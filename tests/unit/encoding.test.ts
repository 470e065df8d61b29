/**
 * What MongoDB can store, checked before a write: the reason names the place and what is wrong,
 * and params past jobd's share of the 16 MiB document are refused at enqueue with the limit named.
 */
import { BSON } from 'bson';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.js';
import { resolveNewJob, whyResultUnstorable, whyUnstorable } from '../../src/store/index.js';

const defaults = { priority: 5 };
const now = new Date('2030-01-01T00:00:00Z');

describe('storable values', () => {
  it('plain JSON-like values, dates, binary and shared (not circular) references are fine', () => {
    const shared = { a: 1 };
    expect(
      whyUnstorable(
        { s: 'x', n: 1.5, b: true, z: null, d: now, bin: new Uint8Array(3), l: [shared, shared] },
        'p',
      ),
    ).toBeNull();
  });

  it('names the place of what BSON would change or cannot hold', () => {
    const circular: Record<string, unknown> = { list: [{}] };
    (circular.list as Record<string, unknown>[])[0]!.up = circular;
    expect(whyUnstorable(circular, 'result')).toBe(
      'result.list[0].up refers back to result (a circular structure)',
    );
    expect(whyUnstorable({ huge: 2n ** 80n + 7n }, 'result')).toBe(
      'result.huge is a BigInt (1208925819614629174706183n); MongoDB has no integer of arbitrary size: store it as a string',
    );
    expect(whyUnstorable({ f: () => 1 }, 'result')).toBe(
      'result.f is a function, which MongoDB cannot store',
    );
    expect(whyUnstorable({ s: Symbol('x') }, 'result')).toBe(
      'result.s is a symbol, which MongoDB cannot store',
    );
    expect(whyUnstorable({ tags: new Set([1]) }, 'result')).toMatch(/^result\.tags is a Set/);
    expect(whyUnstorable({ e: new Error('x') }, 'result')).toMatch(/^result\.e is an Error object/);
    expect(whyUnstorable({ 'a-b': { 'x\u0000': 1 } }, 'params')).toMatch(
      /^params\["a-b"\]\["x\\u0000"\]: a field name/,
    );
    let deep: unknown = 1;
    for (let i = 0; i < 120; i++) deep = { d: deep };
    expect(whyUnstorable(deep, 'result')).toMatch(/is nested deeper than 100 levels, MongoDB's limit$/);
  });

  it('a result that would take its job past 16 MiB is refused with both sizes', () => {
    const job = { _id: 'j', params: { big: 'x'.repeat(9 * 1024 * 1024) } };
    expect(whyResultUnstorable(job, { small: 1 }, '')).toBeNull();
    expect(whyResultUnstorable(job, { big: 'y'.repeat(8 * 1024 * 1024) }, '')).toBe(
      "result takes 8.0 MiB as BSON; with the job's params and history the job document would take 17.0 MiB, over MongoDB's 16.0 MiB document limit",
    );
  });

  it('a result is refused exactly when the job with it (replacing an old result and log tail) passes the limit', () => {
    const slack = 16 * 1024;
    const limit = 16 * 1024 * 1024;
    const withParams = (n: number) => ({
      _id: 'j',
      params: { big: 'x'.repeat(n) },
      result: { old: 'z'.repeat(2 * 1024 * 1024) },
      logTail: 'q'.repeat(1024 * 1024),
    });
    const result = { small: 1 };
    const size = (job: Record<string, unknown>) =>
      BSON.calculateObjectSize({ ...job, result, logTail: 'tail' }, { ignoreUndefined: false });
    // ASCII params: one more character, one more byte. The largest job that still fits with the slack:
    const n = 10_000_000 + (limit - slack - size(withParams(10_000_000)));
    expect(size(withParams(n)) + slack).toBe(limit);
    expect(whyResultUnstorable(withParams(n), result, 'tail')).toBeNull();
    expect(whyResultUnstorable(withParams(n + 1), result, 'tail')).toMatch(/over MongoDB's 16\.0 MiB/);
  });

  it('enqueue refuses params that cannot be stored, or are past the limit, with a ValidationError', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const cases: [unknown, RegExp][] = [
      [circular, /^params\.self refers back to params/],
      [{ n: 10n }, /^params\.n is a BigInt/],
      [
        { big: 'x'.repeat(20 * 1024 * 1024) },
        /^params take 20\.0 MiB as BSON, over jobd's limit of 15\.0 MiB \(MongoDB stores at most 16 MiB per document/,
      ],
    ];
    for (const [params, message] of cases) {
      let err: unknown;
      try {
        resolveNewJob('echo', params, {}, defaults, now);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ValidationError);
      expect((err as Error).message).toMatch(message);
    }
    expect(
      resolveNewJob('echo', { big: 'x'.repeat(14 * 1024 * 1024) }, {}, defaults, now).params,
    ).toBeTruthy();
  });
});
