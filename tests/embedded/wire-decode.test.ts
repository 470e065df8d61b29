/**
 * The wire's one-walk decoder (decodeRequestDocument) must give exactly what bson's deserializer with
 * normalizeNumbers gives (deserializeKeepingTypes), or nothing, leaving the document to bson: the same
 * values of the same classes (int32 as numbers, integral doubles as Double, -0, NaN, Long, UUID against
 * Binary), and serialized again the very bytes it read. What it does not read (other types, '$ref',
 * '__proto__', a string that may be invalid UTF-8) it leaves to bson; and on bytes bson refuses it must
 * never answer a document (checked over seeded mutations of valid commands).
 */
import { describe, expect, it } from 'vitest';
import {
  BSON,
  BSONRegExp,
  BSONSymbol,
  Binary,
  Code,
  DBRef,
  Decimal128,
  Double,
  Int32,
  Long,
  MaxKey,
  MinKey,
  ObjectId,
  Timestamp,
  UUID,
  type Document,
} from 'bson';
import { decodeRequestDocument } from '../../src/embedded/wireDecode.js';
import { deserializeKeepingTypes } from '../../src/embedded/numbers.js';
import { mulberry32 } from '../helpers/random.js';

const at = new Date('2026-12-01T12:00:00.123Z');
const oid = new ObjectId('6b0ed53442ac0f9a8bb71a8e');

/** Documents the decoder reads itself. */
const READ: Record<string, Document> = {
  numbers: {
    int: new Int32(7),
    intMin: new Int32(-2147483648),
    intMax: new Int32(2147483647),
    whole: new Double(1),
    big: new Double(2147483648),
    negZero: new Double(-0),
    zero: new Double(0),
    frac: 1.5,
    nan: Number.NaN,
    inf: Number.POSITIVE_INFINITY,
    negInf: Number.NEGATIVE_INFINITY,
    long: Long.fromNumber(5),
    longMin: Long.MIN_VALUE,
    longMax: Long.MAX_VALUE,
  },
  dates: { at, epoch: new Date(0), before: new Date(-1), far: new Date(8.64e15), past: new Date(-8.64e15) },
  strings: {
    empty: '',
    one: 'a',
    twelve: 'abcdefghijkl',
    thirteen: 'abcdefghijklm',
    twentyFour: 'x'.repeat(24),
    twentyFive: 'y'.repeat(25),
    long: 'z'.repeat(5000),
    accents: 'café',
    euro: '€ and more than twenty-four characters €',
    emoji: '🙂',
    control: '\u0001\u007f',
    again: 'abcdefghijkl',
  },
  others: {
    _id: oid,
    yes: true,
    no: false,
    nil: null,
    ts: new Timestamp({ t: 4294967295, i: 4294967295 }),
    ts0: new Timestamp({ t: 1, i: 2 }),
    bin: new Binary(Buffer.from([1, 2, 3]), 0),
    empty: new Binary(Buffer.alloc(0), 0),
    user: new Binary(Buffer.from([9]), 0x80),
    uuid: new UUID('5b6c1e5e-4a0b-4a8c-9f0e-0123456789ab'),
    notUuid: new Binary(Buffer.from([1, 2, 3]), 4),
    md5: new Binary(Buffer.alloc(16, 7), 5),
  },
  nesting: {
    a: { b: { c: [new Int32(1), [new Double(2), { d: new Double(2.5) }], {}, []] } },
    arr: [at, oid, null, 'x', Long.fromNumber(-1)],
    ключ: { ü: 1, $db: 'x', $id: 1 },
    $db: 'jobd',
    'dotted.name': 1,
  },
  command: {
    insert: 'job_events',
    documents: Array.from({ length: 30 }, (_, i) => ({
      _id: `${oid.toHexString()}:${i}`,
      jobId: oid,
      seq: i,
      from: i % 2 ? 'queued' : 'running',
      to: i % 2 ? 'running' : 'completed',
      at,
      worker: 'host-1234',
      attempt: 1,
      message: null,
    })),
    ordered: false,
    lsid: { id: new UUID('0b6c1e5e-4a0b-4a8c-9f0e-0123456789ab') },
    txnNumber: Long.fromNumber(3),
    $clusterTime: {
      clusterTime: new Timestamp({ t: 1700000000, i: 5 }),
      signature: { hash: new Binary(Buffer.alloc(20), 0), keyId: Long.fromNumber(0) },
    },
    $db: 'jobd',
  },
};

/** Documents it leaves to bson. */
const LEFT: Record<string, Document> = {
  decimal: { a: 1, d: Decimal128.fromString('2.5') },
  regex: { r: /a.b/i },
  bsonRegex: { r: new BSONRegExp('x', 'm') },
  minKey: { k: new MinKey() },
  maxKey: { k: new MaxKey() },
  code: { c: new Code('f()') },
  codeWithScope: { c: new Code('f()', { x: 1 }) },
  symbol: { s: new BSONSymbol('s') },
  oldBinary: { b: new Binary(Buffer.from([1, 2]), 2) },
  dbref: { r: new DBRef('coll', oid) },
  dbrefLike: { r: { $ref: 'coll', $id: 1 } },
  deepRef: { a: [{ b: { $ref: 'x' } }] },
  replacementChar: { s: 'a\ufffdb' },
  proto: JSON.parse('{"a": 1, "__proto__": {"b": 2}}') as Document,
};

function serialize(doc: Document): Buffer {
  return Buffer.from(BSON.serialize(doc));
}

describe('decodeRequestDocument', () => {
  for (const [name, doc] of Object.entries(READ)) {
    it(`reads ${name} as deserializeKeepingTypes does, and back to the same bytes`, () => {
      const bytes = serialize(doc);
      const mine = decodeRequestDocument(bytes);
      expect(mine).toBeDefined();
      expect(mine).toStrictEqual(deserializeKeepingTypes(bytes));
      expect(serialize(mine as Document).equals(bytes)).toBe(true);
    });
  }

  it('keeps each number in its stored form', () => {
    const d = decodeRequestDocument(serialize(READ.numbers as Document)) as Document;
    expect(d.int).toBe(7);
    expect(d.whole).toBeInstanceOf(Double);
    expect(d.big).toBe(2147483648);
    expect(Object.is(d.negZero, -0)).toBe(true);
    expect(d.zero).toBeInstanceOf(Double);
    expect(d.frac).toBe(1.5);
    expect(d.long).toBeInstanceOf(Long);
    const o = decodeRequestDocument(serialize(READ.others as Document)) as Document;
    expect(o.uuid).toBeInstanceOf(UUID);
    expect(o.notUuid).not.toBeInstanceOf(UUID);
    expect(o.notUuid).toBeInstanceOf(Binary);
  });

  it('gives an ObjectId memory of its own, not a view of the request', () => {
    const bytes = serialize({ _id: oid });
    const d = decodeRequestDocument(bytes) as Document;
    bytes.fill(0);
    expect((d._id as ObjectId).toHexString()).toBe(oid.toHexString());
  });

  for (const [name, doc] of Object.entries(LEFT)) {
    it(`leaves ${name} to bson`, () => {
      expect(decodeRequestDocument(serialize(doc))).toBeUndefined();
    });
  }

  it('leaves invalid UTF-8 in a string to bson, which refuses it', () => {
    const bytes = serialize({ s: 'abcé' });
    const at = bytes.indexOf(Buffer.from('é'));
    bytes[at] = 0xff;
    expect(decodeRequestDocument(bytes)).toBeUndefined();
    expect(() => deserializeKeepingTypes(bytes)).toThrow();
  });

  it('answers no document for bytes bson refuses, and the same document for bytes it reads', () => {
    const random = mulberry32(0x5eed);
    const bases = [serialize(READ.command as Document), serialize(READ.others as Document)];
    const small = serialize({ a: 1, b: 'x', c: [1, { d: at }], e: oid, f: true });
    bases.push(small);
    let refused = 0;
    let read = 0;
    for (let n = 0; n < 2000; n++) {
      const base = bases[n % bases.length] as Buffer;
      const bytes = mutate(base, random);
      let expected: Document | undefined;
      try {
        expected = deserializeKeepingTypes(bytes);
      } catch {
        expected = undefined;
      }
      const mine = decodeRequestDocument(bytes);
      if (expected === undefined) {
        refused++;
        expect(mine, `case ${n}`).toBeUndefined();
      } else if (mine !== undefined) {
        read++;
        expect(mine, `case ${n}`).toStrictEqual(expected);
      }
    }
    // Both kinds must occur for the check to mean anything.
    expect(refused).toBeGreaterThan(300);
    expect(read).toBeGreaterThan(300);
  });
});

/** One random change to a copy of `base`: a byte set, a byte bumped, or the document cut short. */
function mutate(base: Buffer, random: () => number): Buffer {
  const bytes = Buffer.from(base);
  const pos = Math.floor(random() * bytes.length);
  switch (Math.floor(random() * 4)) {
    case 0:
      bytes[pos] = Math.floor(random() * 256);
      return bytes;
    case 1:
      bytes[pos] = ((bytes[pos] as number) + 1) & 0xff;
      return bytes;
    case 2: {
      // A type byte (one of the first 20 kinds) or a length's low byte, where most damage is structural.
      bytes[pos] = Math.floor(random() * 20);
      return bytes;
    }
    default: {
      const cut = Buffer.from(bytes.subarray(0, Math.max(5, pos)));
      cut.writeInt32LE(cut.length, 0);
      cut[cut.length - 1] = 0;
      return cut;
    }
  }
}
