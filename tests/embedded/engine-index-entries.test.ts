/**
 * A write moves a document's index entries by keys encoded straight from the document when it can
 * (Index.encodedEntry, Index.move), and by the general expansion of keys otherwise. Both must leave the
 * very entries an index built afresh over the same documents holds: here a random walk of inserts,
 * updates and deletes over awkward values (arrays, null against a missing field, -0, NaN, longs, integral
 * doubles, decimals, strings no key encodes, embedded documents, non-plain objects on a dotted path)
 * is checked, after every step, against indexes rebuilt from scratch by the general path alone.
 */
import { describe, expect, it } from 'vitest';
import { Decimal128, Double, Long, MaxKey, MinKey, ObjectId, type Document } from 'bson';
import { Collection } from '../../src/embedded/collection.js';
import { KEY_MAX, KEY_MIN, type Index, type IndexSpec } from '../../src/embedded/indexes.js';
import { canonicalKey } from '../../src/embedded/bsonOrder.js';
import { mulberry32 as random } from '../helpers/random.js';

const SPECS: IndexSpec[] = [
  { key: { a: 1 }, name: 'a' },
  { key: { a: -1, b: 1 }, name: 'a_desc_b' },
  { key: { 'n.x': 1, a: 1 }, name: 'nx_a' },
  { key: { b: 1 }, name: 'b_sparse', sparse: true },
  { key: { b: 1, a: -1 }, name: 'b_partial', partialFilterExpression: { p: { $exists: true } } },
  { key: { state: 1, 'l.at': 1 }, name: 'lease', partialFilterExpression: { 'l.at': { $exists: true } } },
  { key: { u: 1 }, name: 'u_unique', unique: true, partialFilterExpression: { u: { $exists: true } } },
];

const VALUES: unknown[] = [
  null,
  0,
  -0,
  1,
  1.5,
  -2,
  Number.NaN,
  Infinity,
  Long.fromNumber(1),
  new Double(1),
  Decimal128.fromString('1.0'),
  '',
  'a',
  'b',
  'é☃',
  'no\u0000key', // a code unit no key string encodes
  new Date(0),
  new Date(1_700_000_000_000),
  new Date(Number.NaN),
  new ObjectId('65a1b2c3d4e5f60718293a4b'),
  true,
  false,
  [],
  [1, 2],
  [2, 1, 2],
  ['a', null],
  [[1]],
  { x: 1 },
  {},
  new MinKey(),
  new MaxKey(),
];

/** Every entry of an index, in order, as comparable strings. */
function entries(index: Index): string[] {
  const width = index.fields.length + 1;
  const out: string[] = [];
  for (const [key, id] of index.entriesFrom(Array(width).fill(KEY_MIN), Array(width).fill(KEY_MAX), false))
    out.push(`${canonicalKey(key)} -> ${id}`);
  return out;
}

function newCollection(): Collection {
  const c = new Collection('t', 'c');
  for (const spec of SPECS) c.addIndex(spec);
  return c;
}

describe('index entries moved by encoded keys', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`match indexes rebuilt by the general path (random walk ${seed})`, () => {
      const rnd = random(seed);
      const pick = (): unknown => VALUES[Math.floor(rnd() * VALUES.length)];
      const ids: unknown[] = [
        1,
        2,
        'three',
        new ObjectId('65a1b2c3d4e5f60718293a00'),
        5.5,
        new Date(7),
        8,
        9,
      ];
      const coll = newCollection();
      const field = (doc: Document, name: string): void => {
        const r = rnd();
        if (r < 0.25) delete doc[name];
        else doc[name] = pick();
      };
      const make = (id: unknown, from?: Document): Document => {
        const doc: Document = from ? { ...from } : { _id: id };
        for (const name of ['a', 'b', 'p', 'u', 'state']) if (!from || rnd() < 0.4) field(doc, name);
        if (!from || rnd() < 0.3) {
          const r = rnd();
          doc.n =
            r < 0.2
              ? undefined
              : r < 0.4
                ? [{ x: pick() }, { x: pick() }]
                : r < 0.5
                  ? new Date(3)
                  : { x: pick() };
          if (doc.n === undefined) delete doc.n;
        }
        if (!from || rnd() < 0.3) {
          const r = rnd();
          if (r < 0.3) delete doc.l;
          else doc.l = r < 0.5 ? { at: pick(), owner: 'w' } : r < 0.6 ? [{ at: 1 }] : { owner: 'w' };
        }
        return doc;
      };
      for (let step = 0; step < 400; step++) {
        const id = ids[Math.floor(rnd() * ids.length)];
        const old = coll.get(id);
        const r = rnd();
        try {
          if (!old) coll.insert(make(id));
          else if (r < 0.8) coll.replace(old, make(id, old));
          else if (r < 0.9) coll.remove(old);
          else coll.removeMany([...coll.docs.values()].slice(0, 3));
        } catch (err) {
          // A unique index refusing a duplicate changes nothing.
          if (!(err instanceof Error && /duplicate key/.test(err.message))) throw err;
        }
        // Documents first, indexes after: addIndex builds each index by the general path only.
        const fresh = new Collection('t', 'c');
        for (const doc of coll.docs.values()) fresh.insert(doc);
        for (const spec of SPECS) fresh.addIndex(spec);
        for (const spec of SPECS) {
          const got = coll.indexes.get(spec.name) as Index;
          const want = fresh.indexes.get(spec.name) as Index;
          expect(entries(got), `${spec.name} after step ${step}`).toEqual(entries(want));
          expect(got.size).toBe(want.size);
        }
      }
    });
  }
});
