/**
 * Wire-protocol fuzzing for the embedded server: seeded, reproducible cases of random bytes, mutated
 * OP_MSG and OP_QUERY frames (bit flips, overwritten lengths, truncation), random BSON commands, and
 * legal commands with over-size payloads; and a runner that delivers a case on its own connection and
 * waits, on socket events, until the server has dealt with it.
 *
 * Case `i` of seed `s` is the same bytes on every run: set JOBD_FUZZ_SEED (and JOBD_FUZZ_CASE to run
 * one case) to reproduce a failure.
 */
import {
  BSON,
  Binary,
  Code,
  Decimal128,
  Double,
  Int32,
  Long,
  MaxKey,
  MinKey,
  ObjectId,
  Timestamp,
} from 'bson';
import type { Document } from 'bson';
import { OP_MSG, OP_QUERY, RawConnection, ServerClosed, header, opMsg, opQuery } from '../helpers/rawWire.js';

const MAX_MESSAGE = 48_000_000;
const LIMIT = 16 * 1024 * 1024;
/** The database fuzzed commands address; data that must stay intact lives elsewhere. */
export const FUZZ_DB = 'fuzz';

/** mulberry32: small, fast, and the same sequence everywhere for a seed. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

export interface FuzzCase {
  seed: number;
  index: number;
  kind: string;
  bytes: Buffer;
}

/** The seed of one case, so any case is generated without the ones before it. */
function caseSeed(seed: number, index: number): number {
  let h = (seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

const INTERESTING_INT32 = [
  0,
  1,
  -1,
  4,
  5,
  15,
  16,
  17,
  21,
  0x7fffffff,
  -0x80000000,
  LIMIT,
  LIMIT + 16 * 1024,
  LIMIT + 16 * 1024 + 1,
  MAX_MESSAGE,
  MAX_MESSAGE + 1,
];

const COMMAND_NAMES = [
  'insert',
  'update',
  'delete',
  'find',
  'findAndModify',
  'aggregate',
  'count',
  'distinct',
  'getMore',
  'killCursors',
  'createIndexes',
  'dropIndexes',
  'listIndexes',
  'listCollections',
  'create',
  'collMod',
  'drop',
  'explain',
  'hello',
  'isMaster',
  'ping',
  'buildInfo',
  'getParameter',
  'serverStatus',
  'endSessions',
  'listDatabases',
  'renameCollection',
];

const FIELD_NAMES = [
  'documents',
  'updates',
  'deletes',
  'filter',
  'query',
  'sort',
  'projection',
  'pipeline',
  'cursor',
  'batchSize',
  'limit',
  'skip',
  'ordered',
  'upsert',
  'new',
  'remove',
  'update',
  'q',
  'u',
  'multi',
  'arrayFilters',
  'hint',
  'collation',
  'let',
  'key',
  'indexes',
  'index',
  'validator',
  'viewOn',
  'lsid',
  'txnNumber',
  'maxTimeMS',
  'readConcern',
  'writeConcern',
  'comment',
  'fields',
  '$db',
  '$a',
  'a.b',
  '',
  '_id',
];

function randomString(rng: Rng, max = 12): string {
  const alphabet = ['a', 'b', 'x', '$', '.', '_', 'é', '\u0000', '€', '😀', '0', ' '];
  let s = '';
  const n = rng.int(max + 1);
  for (let i = 0; i < n; i++) s += rng.pick(alphabet);
  return s;
}

function randomKey(rng: Rng): string {
  if (rng.chance(0.5)) return rng.pick(FIELD_NAMES);
  // A key is a C string: no NUL inside.
  return randomString(rng, 6).split('\u0000').join('');
}

export function randomValue(rng: Rng, depth: number): unknown {
  const kinds = depth > 4 ? 14 : 17;
  switch (rng.int(kinds)) {
    case 0:
      return rng.pick([0, 1, -1, 2147483647, -2147483648, 7]);
    case 1:
      return new Double(rng.pick([0.5, -0, NaN, Infinity, -Infinity, 1e308, 3]));
    case 2:
      return rng.pick([Long.fromNumber(5), Long.MAX_VALUE, Long.MIN_VALUE, Long.fromNumber(-1)]);
    case 3:
      return Decimal128.fromString(rng.pick(['1.5', 'NaN', '-Infinity', '1E+6144', '0']));
    case 4:
      return randomString(rng, 20);
    case 5:
      return rng.chance(0.5);
    case 6:
      return null;
    case 7:
      return new Date(rng.pick([0, -1, 8.64e15, Date.now()]));
    case 8:
      return new ObjectId();
    case 9:
      return new Binary(rng.bytes(rng.int(20)), rng.pick([0, 4, 3, 5, 0x80]));
    case 10:
      return new RegExp(rng.pick(['a.*', '^x', '[a-z]+', '']), rng.pick(['', 'i', 'm', 's']));
    case 11:
      return new Timestamp({ t: rng.int(2 ** 31), i: rng.int(100) });
    case 12:
      return rng.chance(0.5) ? new MinKey() : new MaxKey();
    case 13:
      return rng.chance(0.5) ? new Int32(rng.int(100)) : new Code('function () {}');
    case 14:
    case 15: {
      const out: unknown[] = [];
      const n = rng.int(5);
      for (let i = 0; i < n; i++) out.push(randomValue(rng, depth + 1));
      return out;
    }
    default:
      return randomDocument(rng, depth + 1);
  }
}

export function randomDocument(rng: Rng, depth = 0): Document {
  const doc: Document = {};
  const n = rng.int(5);
  for (let i = 0; i < n; i++) {
    const k = rng.chance(0.3)
      ? rng.pick([
          '$eq',
          '$gt',
          '$in',
          '$set',
          '$inc',
          '$push',
          '$each',
          '$group',
          '$match',
          '$sum',
          '$expr',
          '$and',
          '$or',
          '$not',
          '$exists',
        ])
      : randomKey(rng);
    doc[k] = randomValue(rng, depth);
  }
  return doc;
}

/** Legal commands over a small world of collections, the base that mutations start from. */
function corpusCommand(rng: Rng): Document {
  const coll = rng.pick(['c', 'd', 'e']);
  const small = (): Document => ({
    _id: rng.int(20),
    a: rng.int(5),
    b: randomString(rng, 4),
    arr: [1, rng.int(3), 'x'],
  });
  const filter = (): Document =>
    rng.pick<Document>([
      {},
      { a: rng.int(5) },
      { a: { $gt: 1 } },
      { arr: { $elemMatch: { $gt: 0 } } },
      { b: { $regex: '^a' } },
      { $or: [{ a: 1 }, { b: 'x' }] },
    ]);
  const base = ((): Document => {
    switch (rng.int(20)) {
      case 0:
        return {
          insert: coll,
          documents: Array.from({ length: 1 + rng.int(3) }, small),
          ordered: rng.chance(0.5),
        };
      case 1:
        return {
          find: coll,
          filter: filter(),
          sort: { a: rng.pick([1, -1]) },
          limit: rng.int(5),
          batchSize: rng.int(3),
        };
      case 2:
        return {
          update: coll,
          updates: [
            {
              q: filter(),
              u: rng.pick<unknown>([
                { $set: { a: rng.int(9) } },
                { $inc: { a: 1 } },
                { $push: { arr: 5 } },
                { $unset: { b: '' } },
                [{ $set: { c: { $add: ['$a', 1] } } }],
                { x: 1 },
              ]),
              multi: rng.chance(0.5),
              upsert: rng.chance(0.3),
            },
          ],
        };
      case 3:
        return { delete: coll, deletes: [{ q: filter(), limit: rng.int(2) }] };
      case 4:
        return {
          findAndModify: coll,
          query: filter(),
          update: { $set: { a: rng.int(9) } },
          new: rng.chance(0.5),
          upsert: rng.chance(0.5),
          sort: { a: 1 },
        };
      case 5:
        return {
          aggregate: coll,
          pipeline: rng.pick<Document[]>([
            [{ $match: filter() }, { $group: { _id: '$a', n: { $sum: 1 }, all: { $push: '$b' } } }],
            [{ $unwind: '$arr' }, { $sort: { arr: -1 } }, { $limit: 3 }],
            [{ $lookup: { from: 'd', localField: 'a', foreignField: 'a', as: 'j' } }],
            [{ $project: { s: { $concat: ['$b', '$b'] } } }],
            [{ $facet: { x: [{ $count: 'n' }] } }],
            [{ $match: {} }, { $out: 'out' }],
          ]),
          cursor: { batchSize: rng.int(4) },
        };
      case 6:
        return { count: coll, query: filter() };
      case 7:
        return { distinct: coll, key: rng.pick(['a', 'b', 'arr']), query: filter() };
      case 8:
        return {
          createIndexes: coll,
          indexes: [
            {
              key: { [rng.pick(['a', 'b', 'arr'])]: rng.pick([1, -1]) },
              name: `i${rng.int(4)}`,
              unique: rng.chance(0.3),
            },
          ],
        };
      case 9:
        return { dropIndexes: coll, index: `i${rng.int(4)}` };
      case 10:
        return { listIndexes: coll };
      case 11:
        return { listCollections: 1, filter: {}, nameOnly: rng.chance(0.5) };
      case 12:
        return { getMore: Long.fromNumber(rng.int(1e9)), collection: coll, batchSize: 2 };
      case 13:
        return { killCursors: coll, cursors: [Long.fromNumber(rng.int(1e9))] };
      case 14:
        return { explain: { find: coll, filter: filter() } };
      case 15:
        return { create: `v${rng.int(3)}`, viewOn: coll, pipeline: [{ $match: { a: 1 } }] };
      case 16:
        return { drop: rng.pick(['out', 'v0', 'e']) };
      case 17:
        return { collMod: coll, validator: rng.chance(0.5) ? {} : { a: { $type: 'number' } } };
      case 18:
        return { hello: 1 };
      default:
        return { ping: 1 };
    }
  })();
  return { ...base, $db: FUZZ_DB };
}

/** A command of a known name with random fields and values: valid BSON, any shape. */
function randomCommand(rng: Rng): Document {
  const cmd: Document = {
    [rng.pick(COMMAND_NAMES)]: rng.chance(0.6) ? rng.pick(['c', 'd', 1, '']) : randomValue(rng, 1),
  };
  const n = rng.int(5);
  for (let i = 0; i < n; i++) cmd[randomKey(rng)] = randomValue(rng, 1);
  cmd.$db = FUZZ_DB;
  return cmd;
}

function encodeCommand(rng: Rng, cmd: Document): Buffer {
  try {
    if (rng.chance(0.2)) return opQuery(rng.pick(['admin.$cmd', `${FUZZ_DB}.$cmd`, 'fuzz.c']), cmd);
    // Move an array field into a document sequence, as drivers do for insert/update/delete.
    const seqField = ['documents', 'updates', 'deletes'].find((f) => Array.isArray(cmd[f]));
    if (seqField && rng.chance(0.5)) {
      const { [seqField]: docs, ...body } = cmd;
      return opMsg(body, { sequences: [[seqField, docs as Document[]]], checksum: rng.chance(0.3) });
    }
    return opMsg(cmd, { checksum: rng.chance(0.2), moreToCome: rng.chance(0.05) });
  } catch {
    // A value the serializer refuses (an invalid regex flag, ...): fall back to a plain ping.
    return opMsg({ ping: 1, $db: 'admin' });
  }
}

function mutate(rng: Rng, frame: Buffer): Buffer {
  let b = Buffer.from(frame);
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = b.length > 0 ? rng.int(b.length) : 0;
    switch (rng.int(7)) {
      case 0:
        if (b.length > 0) b[at] = (b[at] as number) ^ (1 << rng.int(8));
        break;
      case 1:
        if (b.length > 0) b[at] = rng.pick([0, 0xff, 0x7f, 0x80, 0x01, rng.int(256)]);
        break;
      case 2:
        if (at + 4 <= b.length)
          b.writeInt32LE(rng.pick([...INTERESTING_INT32, b.length, b.length - 1, b.length + 1]), at);
        break;
      case 3:
        b = b.subarray(0, at);
        break;
      case 4:
        b = Buffer.concat([b, rng.bytes(1 + rng.int(64))]);
        break;
      case 5: {
        const len = rng.int(Math.min(32, b.length - at) + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + len), b.subarray(at)]);
        break;
      }
      default: {
        const len = rng.int(Math.min(32, b.length - at) + 1);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
      }
    }
  }
  // Often keep the length prefix true, so the damage reaches the parser rather than the framing.
  if (b.length >= 4 && rng.chance(0.6)) b.writeInt32LE(b.length, 0);
  return b;
}

function randomFrame(rng: Rng): Buffer {
  const payload = rng.bytes(rng.int(300));
  const opCode = rng.pick([OP_MSG, OP_QUERY, 2012, 1, 2001, 2005, rng.int(5000)]);
  const length = rng.chance(0.7) ? 16 + payload.length : rng.pick(INTERESTING_INT32);
  const h = header(length, opCode);
  if (opCode === OP_MSG && payload.length >= 5 && rng.chance(0.5)) payload.writeUInt32LE(0, 0);
  return Buffer.concat([h, payload]);
}

/** A document nested `depth` levels deep, encoded by hand (a serializer would overflow its stack). */
export function deeplyNested(depth: number): Buffer {
  // { a: { a: { ... {} } } }: level k starts at 7k with its size, type 0x03 and "a\0"; the innermost
  // empty document follows; each level ends with its own terminating 0x00 after the one it holds.
  const total = 8 * depth + 5;
  const b = Buffer.alloc(total);
  for (let k = 0; k < depth; k++) {
    b.writeInt32LE(total - 8 * k, 7 * k);
    b[7 * k + 4] = 0x03;
    b[7 * k + 5] = 0x61;
    b[7 * k + 6] = 0;
  }
  b.writeInt32LE(5, 7 * depth);
  return b;
}

/** Legal commands carrying payloads at and past the limits. */
const HEAVY: Array<(rng: Rng) => Buffer> = [
  () => opMsg({ insert: 'big', $db: FUZZ_DB, documents: [{ _id: 'over', pad: 'x'.repeat(LIMIT) }] }),
  () =>
    opMsg({
      insert: 'big',
      $db: FUZZ_DB,
      documents: [{ pad: 'x'.repeat(LIMIT - 100) }, { pad: 'y'.repeat(40_000) }],
    }),
  (rng) =>
    opMsg(
      { insert: 'big', $db: FUZZ_DB },
      {
        sequences: [
          [
            'documents',
            Array.from({ length: 3 }, (_, i) => ({
              _id: `b${rng.int(1000)}-${i}`,
              pad: 'z'.repeat(6 * 1024 * 1024),
            })),
          ],
        ],
      },
    ),
  () =>
    opMsg({
      aggregate: 'big',
      $db: FUZZ_DB,
      pipeline: [{ $group: { _id: null, all: { $push: '$pad' } } }],
      cursor: {},
    }),
  () => opMsg({ find: 'big', $db: FUZZ_DB, filter: {} }),
  () =>
    opMsg({
      update: 'big',
      $db: FUZZ_DB,
      updates: [{ q: {}, u: { $set: { more: 'm'.repeat(12 * 1024 * 1024) } }, multi: true }],
    }),
  () =>
    opMsg({
      aggregate: 'big',
      $db: FUZZ_DB,
      pipeline: [{ $limit: 1 }, { $project: { thrice: { $concat: ['$pad', '$pad', '$pad'] } } }],
      cursor: {},
    }),
  () => opMsg({ insert: 'deep', $db: FUZZ_DB }, { sequences: [['documents', [deeplyNested(200_000)]]] }),
  () => opMsg({ insert: 'deep', $db: FUZZ_DB }, { sequences: [['documents', [deeplyNested(3_000)]]] }),
  // Decodable, but one level past what a stored document may nest.
  () => opMsg({ insert: 'deep', $db: FUZZ_DB }, { sequences: [['documents', [deeplyNested(181)]]] }),
  () => header(MAX_MESSAGE + 1, OP_MSG),
  (rng) => Buffer.concat([header(16 + 1_000_000, OP_MSG), rng.bytes(1_000_000)]),
  () =>
    opMsg(
      { insert: 'many', $db: FUZZ_DB },
      { sequences: [['documents', Array.from({ length: 100_001 }, (_, i) => ({ _id: i }))]] },
    ),
];

/** How many of the cases are heavy: every `HEAVY_EVERY`-th case takes the next heavy payload. */
export const HEAVY_EVERY = 25;
/** Cases from a multiple of this on meet the heavy payloads from the first again. */
export const HEAVY_CYCLE = HEAVY_EVERY * HEAVY.length;

export function generateCase(seed: number, index: number): FuzzCase {
  const rng = new Rng(caseSeed(seed, index));
  if (index % HEAVY_EVERY === HEAVY_EVERY - 1) {
    const which = Math.floor(index / HEAVY_EVERY) % HEAVY.length;
    return { seed, index, kind: `heavy-${which}`, bytes: (HEAVY[which] as (rng: Rng) => Buffer)(rng) };
  }
  const roll = rng.int(100);
  if (roll < 10) return { seed, index, kind: 'random-bytes', bytes: randomFrame(rng) };
  if (roll < 20) return { seed, index, kind: 'valid', bytes: encodeCommand(rng, corpusCommand(rng)) };
  if (roll < 65)
    return { seed, index, kind: 'mutated', bytes: mutate(rng, encodeCommand(rng, corpusCommand(rng))) };
  if (roll < 90)
    return { seed, index, kind: 'random-command', bytes: encodeCommand(rng, randomCommand(rng)) };
  return {
    seed,
    index,
    kind: 'mutated-random-command',
    bytes: mutate(rng, encodeCommand(rng, randomCommand(rng))),
  };
}

/** How the server will cut `bytes` into messages: whole messages, one cut short, or a bad length. */
export function framing(bytes: Buffer): 'whole' | 'partial' | 'invalid' {
  let at = 0;
  while (at < bytes.length) {
    if (bytes.length - at < 4) return 'partial';
    const len = bytes.readInt32LE(at);
    if (len < 16 || len > MAX_MESSAGE) return 'invalid';
    if (bytes.length - at < len) return 'partial';
    at += len;
  }
  return 'whole';
}

export type Outcome = 'answered' | 'closed';

/**
 * Delivers a case on a new connection and resolves once the server has dealt with all of it: it
 * answered a ping sent after it (messages on a connection run in order), or it closed the connection.
 */
export async function deliver(uri: string, bytes: Buffer, deadlineMs = 60_000): Promise<Outcome> {
  const conn = await RawConnection.open(uri);
  try {
    conn.write(bytes);
    const shape = framing(bytes);
    if (shape === 'invalid') {
      await conn.closedByServer(deadlineMs);
      return 'closed';
    }
    if (shape === 'partial') {
      // The server waits for the rest; going away must make it drop the fragment and close.
      conn.socket.end();
      await conn.closedByServer(deadlineMs);
      return 'closed';
    }
    const sentinel = opMsg({ ping: 1, $db: 'admin' });
    const sentinelId = sentinel.readInt32LE(4);
    conn.write(sentinel);
    for (;;) {
      let frame: Buffer;
      try {
        frame = await conn.nextMessage(deadlineMs);
      } catch (err) {
        if (err instanceof ServerClosed) return 'closed';
        throw err;
      }
      if (frame.length >= 16 && frame.readInt32LE(8) === sentinelId) return 'answered';
    }
  } finally {
    conn.destroy();
  }
}

/** A new connection's ping (below the driver), to tell the server is still serving. */
export async function rawPing(uri: string, deadlineMs = 60_000): Promise<boolean> {
  const conn = await RawConnection.open(uri);
  try {
    conn.write(opMsg({ ping: 1, $db: 'admin' }));
    const frame = await conn.nextMessage(deadlineMs);
    return BSON.deserialize(frame.subarray(21)).ok === 1;
  } finally {
    conn.destroy();
  }
}

export function describeCase(c: FuzzCase): string {
  const hex = c.bytes.subarray(0, 96).toString('hex');
  return `seed ${c.seed} case ${c.index} (${c.kind}, ${c.bytes.length} bytes: ${hex}${c.bytes.length > 96 ? '...' : ''}); rerun with JOBD_FUZZ_SEED=${c.seed} JOBD_FUZZ_CASE=${c.index}`;
}

/** The seed from JOBD_FUZZ_SEED, or a new one. */
export function fuzzSeed(): number {
  const given = process.env.JOBD_FUZZ_SEED;
  if (given !== undefined && given !== '') {
    const n = Number(given);
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
      throw new Error(`JOBD_FUZZ_SEED must be an integer from 0 to 4294967295, got '${given}'`);
    return n;
  }
  return Math.floor(Math.random() * 0xffffffff);
}

/** The case indexes to run: JOBD_FUZZ_CASE alone, or `count` cases from `first`. */
export function caseIndexes(count: number, first = 0): number[] {
  const one = process.env.JOBD_FUZZ_CASE;
  if (one !== undefined && one !== '') {
    const n = Number(one);
    if (!Number.isInteger(n) || n < 0) throw new Error(`JOBD_FUZZ_CASE must be a case number, got '${one}'`);
    return [n];
  }
  return Array.from({ length: count }, (_, i) => first + i);
}

/** A positive whole number from the environment variable `name`, or `fallback` when it is unset. */
export function envCount(name: string, fallback: number): number {
  const given = process.env[name];
  if (given === undefined || given === '') return fallback;
  const n = Number(given);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} must be a whole number of at least 1, got '${given}'`);
  return n;
}
