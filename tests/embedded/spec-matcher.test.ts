/**
 * The spec runner's matching rules (unified test format, "Evaluating Matches"), checked without a
 * server so that a runner bug is not mistaken for a server gap.
 */
import { describe, expect, it } from 'vitest';
import { Decimal128, Double, Int32, Long, ObjectId } from 'mongodb';
import { MatchError, matchExactDocuments, matchRootDocuments, matchValue } from '../helpers/unified/match.js';
import { compareVersions, parseVersion } from '../helpers/unified/requirements.js';
import { DbNames } from '../helpers/unified/dbNames.js';
import { withDeadline } from '../helpers/unified/operations.js';

const ok =
  (expected: unknown, actual: unknown, root = true) =>
  () =>
    matchValue(expected, actual, '', { root });

describe('unified matcher', () => {
  it('allows extra fields at the root only', () => {
    expect(ok({ x: 1 }, { x: 1, y: 2 })).not.toThrow();
    expect(ok({ x: { y: 1 } }, { x: { y: 1, z: 1 } })).toThrow(MatchError);
    expect(ok({ x: 1, y: 1 }, { x: 1 })).toThrow(MatchError);
  });

  it('compares int32, int64 and double by value, but not decimal loosely', () => {
    expect(ok({ n: 1 }, { n: new Double(1) })).not.toThrow();
    expect(ok({ n: new Int32(5) }, { n: Long.fromNumber(5) })).not.toThrow();
    expect(ok({ n: 1 }, { n: 1.5 })).toThrow(MatchError);
    expect(ok({ n: Decimal128.fromString('1') }, { n: Decimal128.fromString('1') })).not.toThrow();
    expect(ok({ n: 1 }, { n: '1' })).toThrow(MatchError);
  });

  it('honours $$exists, $$unsetOrMatches and $$type', () => {
    expect(ok({ a: { $$exists: true } }, { a: null })).not.toThrow();
    expect(ok({ a: { $$exists: false } }, { a: 1 })).toThrow(MatchError);
    expect(ok({ a: { $$unsetOrMatches: 2 } }, {})).not.toThrow();
    expect(ok({ a: { $$unsetOrMatches: 2 } }, { a: 3 })).toThrow(MatchError);
    expect(ok({ $$unsetOrMatches: { insertedId: 1 } }, undefined)).not.toThrow();
    expect(ok({ a: { $$type: ['int', 'long'] } }, { a: 3 })).not.toThrow();
    expect(ok({ a: { $$type: 'objectId' } }, { a: new ObjectId() })).not.toThrow();
    expect(ok({ a: { $$type: 'string' } }, { a: 3 })).toThrow(MatchError);
    expect(ok({ a: { $$type: 'double' } }, { a: 0.25 })).not.toThrow();
  });

  it('requires arrays of equal length, with nested documents exact', () => {
    expect(ok([1, 2, 3], [1, 2, 3, 4])).toThrow(MatchError);
    expect(ok([{ x: 1 }], [{ x: 1, y: 1 }])).toThrow(MatchError);
    expect(() => matchRootDocuments([{ x: 1 }], [{ x: 1, y: 1 }])).not.toThrow();
  });

  it('compares outcome documents exactly, in any key order', () => {
    expect(() => matchExactDocuments([{ _id: 1, a: 1, b: 2 }], [{ b: 2, _id: 1, a: 1 }], 'c')).not.toThrow();
    expect(() => matchExactDocuments([{ _id: 1 }], [{ _id: 1, extra: true }], 'c')).toThrow(MatchError);
    expect(() => matchExactDocuments([{ _id: 1 }], [], 'c')).toThrow(MatchError);
  });

  it('compares server versions numerically', () => {
    expect(compareVersions([7, 0, 0], parseVersion('4.4.14'))).toBeGreaterThan(0);
    expect(compareVersions([7, 0, 0], parseVersion('7.99'))).toBeLessThan(0);
    expect(compareVersions([4, 0, 10], parseVersion('4.0.9'))).toBeGreaterThan(0);
  });

  it("translates database names back to the case file's names, wherever the server reports them", () => {
    const names = new DbNames();
    const real = names.map('database0');
    expect(real).not.toBe('database0');
    expect(names.map('admin')).toBe('admin');
    expect(names.owns(real)).toBe(true);
    expect(names.owns('database0')).toBe(false);
    const event = {
      ns: { db: real, coll: 'c' },
      to: { db: real, coll: 'd' },
      id: new ObjectId(),
      list: [`${real}.c`],
      sort: new Map([['_id', 1]]),
    };
    const back = names.unmap(event);
    expect(back.ns).toEqual({ db: 'database0', coll: 'c' });
    expect(back.to.db).toBe('database0');
    expect(back.list).toEqual(['database0.c']);
    expect(back.id).toBe(event.id);
    expect(back.sort).toEqual({ _id: 1 });
    expect(names.unmapString(`ns not found ${real}.c`)).toBe('ns not found database0.c');
    expect(event.ns.db).toBe(real);
  });

  it('bounds a wait', async () => {
    const never = new Promise<never>(() => {});
    await expect(withDeadline(never, 50, 'iterate')).rejects.toThrow(/iterate: nothing within 50 ms/);
    await expect(withDeadline(Promise.resolve(7), 50, 'x')).resolves.toBe(7);
  });
});
