/**
 * "Evaluating Matches" of the unified test format: expected values from a case file against actual
 * values the driver returned. Root-level documents may carry extra fields, nested ones may not;
 * int32/int64/double compare by value; `$$`-operators ($$exists, $$type, $$unsetOrMatches, ...) are
 * honoured. A mismatch throws a MatchError naming the path where it happened.
 */
import { BSON, type Document } from 'mongodb';

const { EJSON } = BSON;

export class MatchError extends Error {
  override name = 'MatchError';
}

/** Resolves `$$matchesEntity` / `$$sessionLsid` references. */
export interface EntityLookup {
  get(name: string): unknown;
}

export interface MatchOptions {
  /** Extra fields in the actual document are allowed (root-level documents only). */
  root: boolean;
  entities?: EntityLookup;
}

const NO_ENTITIES: EntityLookup = {
  get(name) {
    throw new MatchError(`entity ${name} is not defined`);
  },
};

export function bsonType(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  const tag = (value as { _bsontype?: string })._bsontype;
  return typeof tag === 'string' ? tag : undefined;
}

/** A plain document (not an array, not a BSON value wrapper, not a Date/RegExp/bytes). */
export function isDocument(value: unknown): value is Document {
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value) || value instanceof Date || value instanceof RegExp || value instanceof Uint8Array)
    return false;
  return bsonType(value) === undefined;
}

/** The single `$$operator` key of an expected value, if it is one. */
export function specialOperator(value: unknown): string | undefined {
  if (!isDocument(value)) return undefined;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0]!.startsWith('$$') ? keys[0] : undefined;
}

function hasKey(doc: Document, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(doc, key) && doc[key] !== undefined;
}

/** A number as JS number or bigint, when the value is int32/int64/double (not decimal). */
function numeric(value: unknown): number | bigint | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return value;
  switch (bsonType(value)) {
    case 'Int32':
    case 'Double':
      return (value as { value: number }).value;
    case 'Long':
      return BigInt((value as { toString(): string }).toString());
    default:
      return undefined;
  }
}

function numbersEqual(a: number | bigint, b: number | bigint): boolean {
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    const x = typeof a === 'bigint' ? a : Number.isInteger(a) ? BigInt(a) : undefined;
    const y = typeof b === 'bigint' ? b : Number.isInteger(b) ? BigInt(b) : undefined;
    return x !== undefined && y !== undefined && x === y;
  }
  return a === b || (Number.isNaN(a) && Number.isNaN(b));
}

function lte(actual: number | bigint, expected: number | bigint): boolean {
  return Number(actual) <= Number(expected);
}

/**
 * The $type names an actual value answers to. Numbers returned by the driver are promoted to JS
 * numbers, so an integral JS number answers to int, long and double alike.
 */
export function typeNames(value: unknown): string[] {
  if (value === null) return ['null'];
  if (value === undefined) return [];
  if (typeof value === 'number')
    return Number.isInteger(value) ? ['int', 'long', 'double', 'number'] : ['double', 'number'];
  if (typeof value === 'bigint') return ['long', 'number'];
  if (typeof value === 'string') return ['string'];
  if (typeof value === 'boolean') return ['bool'];
  if (Array.isArray(value)) return ['array'];
  if (value instanceof Date) return ['date'];
  if (value instanceof RegExp) return ['regex'];
  if (value instanceof Uint8Array) return ['binData'];
  switch (bsonType(value)) {
    case 'Int32':
      return ['int', 'number'];
    case 'Double':
      return ['double', 'number'];
    case 'Long':
      return ['long', 'number'];
    case 'Decimal128':
      return ['decimal', 'number'];
    case 'ObjectId':
      return ['objectId'];
    case 'Binary':
      return ['binData'];
    case 'Timestamp':
      return ['timestamp'];
    case 'BSONRegExp':
      return ['regex'];
    case 'MinKey':
      return ['minKey'];
    case 'MaxKey':
      return ['maxKey'];
    case 'BSONSymbol':
      return ['symbol'];
    case 'DBRef':
      return ['dbPointer', 'object'];
    case 'Code':
      return (value as { scope?: unknown }).scope ? ['javascriptWithScope'] : ['javascript'];
    default:
      return isDocument(value) ? ['object'] : [];
  }
}

function describe(value: unknown): string {
  try {
    return EJSON.stringify(value as Document, { relaxed: true });
  } catch {
    return String(value);
  }
}

function fail(path: string, message: string): never {
  throw new MatchError(`${path || '(root)'}: ${message}`);
}

function scalarEqual(expected: unknown, actual: unknown): boolean {
  const en = numeric(expected);
  const an = numeric(actual);
  if (en !== undefined || an !== undefined)
    return en !== undefined && an !== undefined && numbersEqual(en, an);
  if (expected === null || actual === null) return expected === actual;
  if (typeof expected !== 'object' || typeof actual !== 'object') return expected === actual;
  if (expected instanceof Date || actual instanceof Date) {
    return expected instanceof Date && actual instanceof Date && expected.getTime() === actual.getTime();
  }
  // Remaining BSON values (ObjectId, Binary, Decimal128, Timestamp, regex, MinKey, ...): compare their
  // canonical Extended JSON, which encodes both type and value.
  const canonical = (v: unknown) => EJSON.stringify({ v } as Document, { relaxed: false });
  return canonical(normaliseRegex(expected)) === canonical(normaliseRegex(actual));
}

function normaliseRegex(value: unknown): unknown {
  if (value instanceof RegExp)
    return { $regularExpression: { pattern: value.source, options: [...value.flags].sort().join('') } };
  if (bsonType(value) === 'BSONRegExp') {
    const r = value as { pattern: string; options: string };
    return { $regularExpression: { pattern: r.pattern, options: [...r.options].sort().join('') } };
  }
  return value;
}

function hexOf(value: unknown): string | undefined {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (bsonType(value) === 'Binary')
    return Buffer.from((value as { buffer: Uint8Array }).buffer).toString('hex');
  return undefined;
}

/** Applies a `$$operator` to the actual value (which may be undefined when the key is absent). */
function matchOperator(op: string, arg: unknown, actual: unknown, path: string, options: MatchOptions): void {
  const entities = options.entities ?? NO_ENTITIES;
  switch (op) {
    case '$$exists':
      if (Boolean(arg) !== (actual !== undefined))
        fail(path, arg ? 'expected the field to exist' : `expected no field, got ${describe(actual)}`);
      return;
    case '$$unsetOrMatches':
      if (actual === undefined) return;
      matchValue(arg, actual, path, options);
      return;
    case '$$type': {
      const wanted = Array.isArray(arg) ? (arg as string[]) : [arg as string];
      if (actual === undefined) fail(path, `expected a value of type ${wanted.join('|')}, field is absent`);
      const names = typeNames(actual);
      if (!wanted.some((t) => names.includes(t)))
        fail(
          path,
          `expected type ${wanted.join('|')}, got ${names.join('|') || 'unknown'} (${describe(actual)})`,
        );
      return;
    }
    case '$$matchesEntity':
      matchValue(entities.get(String(arg)), actual, path, options);
      return;
    case '$$matchesHexBytes': {
      const hex = hexOf(actual);
      if (hex === undefined || hex !== String(arg).toLowerCase())
        fail(path, `expected bytes ${String(arg)}, got ${describe(actual)}`);
      return;
    }
    case '$$sessionLsid': {
      const session = entities.get(String(arg)) as { id?: Document } | undefined;
      if (!session?.id) fail(path, `entity ${String(arg)} is not a session`);
      matchValue(session.id, actual, path, { ...options, root: false });
      return;
    }
    case '$$lte': {
      const a = numeric(actual);
      const e = numeric(arg);
      if (a === undefined || e === undefined || !lte(a, e))
        fail(path, `expected a number <= ${describe(arg)}, got ${describe(actual)}`);
      return;
    }
    case '$$matchAsDocument': {
      if (typeof actual !== 'string') fail(path, `expected an Extended JSON string, got ${describe(actual)}`);
      matchValue(arg, EJSON.parse(actual, { relaxed: false }), path, { ...options, root: false });
      return;
    }
    case '$$matchAsRoot':
      matchValue(arg, actual, path, { ...options, root: true });
      return;
    default:
      throw new MatchError(`${path || '(root)'}: unsupported special operator ${op}`);
  }
}

/** Asserts that `actual` matches `expected`; throws MatchError otherwise. */
export function matchValue(
  expected: unknown,
  actual: unknown,
  path = '',
  options: MatchOptions = { root: true },
): void {
  const op = specialOperator(expected);
  if (op) {
    matchOperator(op, (expected as Document)[op], actual, path, options);
    return;
  }

  if (isDocument(expected)) {
    if (!isDocument(actual)) fail(path, `expected a document ${describe(expected)}, got ${describe(actual)}`);
    for (const [key, value] of Object.entries(expected)) {
      const sub = path ? `${path}.${key}` : key;
      const keyOp = specialOperator(value);
      const present = hasKey(actual, key);
      if (keyOp === '$$exists' || keyOp === '$$unsetOrMatches') {
        matchOperator(keyOp, (value as Document)[keyOp], present ? actual[key] : undefined, sub, {
          ...options,
          root: false,
        });
        continue;
      }
      if (!present) fail(sub, `expected ${describe(value)}, field is absent`);
      matchValue(value, actual[key], sub, { ...options, root: false });
    }
    if (!options.root) {
      const extra = Object.keys(actual).filter(
        (k) => actual[k] !== undefined && !Object.prototype.hasOwnProperty.call(expected, k),
      );
      if (extra.length > 0) fail(path, `unexpected field(s) ${extra.join(', ')} in ${describe(actual)}`);
    }
    return;
  }

  if (Array.isArray(expected)) {
    if (!Array.isArray(actual))
      fail(path, `expected an array ${describe(expected)}, got ${describe(actual)}`);
    if (actual.length !== expected.length)
      fail(path, `expected ${expected.length} element(s), got ${actual.length}: ${describe(actual)}`);
    expected.forEach((value, i) =>
      matchValue(value, actual[i], `${path}[${i}]`, { ...options, root: false }),
    );
    return;
  }

  if (!scalarEqual(expected, actual)) fail(path, `expected ${describe(expected)}, got ${describe(actual)}`);
}

/**
 * Iterable results (find, aggregate, listCollections, ...) are arrays of root-level documents: each
 * element may carry extra fields, but the counts must agree.
 */
export function matchRootDocuments(
  expected: unknown,
  actual: unknown,
  options: Omit<MatchOptions, 'root'> = {},
): void {
  if (!Array.isArray(expected)) {
    matchValue(expected, actual, '', { ...options, root: true });
    return;
  }
  if (!Array.isArray(actual))
    fail('', `expected an array of ${expected.length} document(s), got ${describe(actual)}`);
  if (actual.length !== expected.length)
    fail('', `expected ${expected.length} document(s), got ${actual.length}: ${describe(actual)}`);
  expected.forEach((value, i) => matchValue(value, actual[i], `[${i}]`, { ...options, root: true }));
}

/** Collection contents after a test: exact documents (no extra fields), flexible numerics, any key order. */
export function matchExactDocuments(expected: Document[], actual: Document[], label: string): void {
  if (actual.length !== expected.length) {
    throw new MatchError(
      `${label}: expected ${expected.length} document(s), got ${actual.length}: ${describe(actual)}`,
    );
  }
  expected.forEach((doc, i) => matchValue(doc, actual[i], `${label}[${i}]`, { root: false }));
}
