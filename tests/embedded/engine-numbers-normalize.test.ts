/**
 * normalizeNumbers (what every document the server reads goes through) skips Dates and other BSON
 * values without walking them and writes a slot only when its value changes. Whatever the nesting,
 * the result must keep each number's BSON type: serialized again it gives back the very bytes it came
 * from, and the values are the plain numbers and wrappers numbers.ts describes.
 */
import { describe, expect, it } from 'vitest';
import { BSON, Decimal128, Double, Int32, Long, ObjectId, Timestamp, type Document } from 'bson';
import { deserializeKeepingTypes } from '../../src/embedded/numbers.js';

const at = new Date('2026-12-01T12:00:00Z');
const oid = new ObjectId('6b0ed53442ac0f9a8bb71a8e');

const DOC: Document = {
  _id: oid,
  at,
  int: new Int32(7),
  neg: new Int32(-1),
  whole: new Double(1),
  negZero: new Double(-0),
  frac: new Double(1.5),
  long: Long.fromNumber(5),
  dec: Decimal128.fromString('2.5'),
  ts: new Timestamp({ t: 1, i: 2 }),
  nil: null,
  s: 'x',
  arr: [new Int32(1), at, [new Double(2.5), { d: new Double(3) }], null, { at, n: new Int32(4) }],
  nested: { a: { b: { c: [new Int32(9), new Double(0.25)] } }, at, empty: {} },
  emptyArr: [],
};

describe('normalizeNumbers', () => {
  it('serializes back to the bytes it read, every number type and nesting kept', () => {
    const bytes = BSON.serialize(DOC);
    const doc = deserializeKeepingTypes(bytes);
    expect(Buffer.from(BSON.serialize(doc)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('stores int32s as numbers, integral doubles as Double, other doubles as numbers, and keeps Dates', () => {
    const doc = deserializeKeepingTypes(BSON.serialize(DOC));
    expect(doc.int).toBe(7);
    expect(doc.neg).toBe(-1);
    expect(doc.whole).toBeInstanceOf(Double);
    expect(Object.is(doc.negZero, -0)).toBe(true); // a number, yet serialized as a double
    expect(doc.frac).toBe(1.5);
    expect(doc.long).toBeInstanceOf(Long);
    expect(doc.at).toBeInstanceOf(Date);
    expect((doc.at as Date).getTime()).toBe(at.getTime());
    const arr = doc.arr as unknown[];
    expect(arr[0]).toBe(1);
    expect(arr[1]).toBeInstanceOf(Date);
    expect((arr[2] as unknown[])[0]).toBe(2.5);
    expect(((arr[2] as unknown[])[1] as Document).d).toBeInstanceOf(Double);
    expect(arr[3]).toBeNull();
    expect((arr[4] as Document).n).toBe(4);
    expect((doc.nested as Document).a.b.c).toEqual([9, 0.25]);
    expect(doc._id).toEqual(oid);
  });
});
