/**
 * Index specifications as createIndexes receives them: the options this server honours, the
 * MongoDB 7.0 options and index types it refuses (NotImplemented), and commitQuorum on a
 * one-member replica set.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { canonicalKey, isPlainObject, numericValue } from './bsonOrder.js';
import { defaultIndexName, validateKeyPattern, type IndexSpec } from './indexes.js';
import { compileFilter } from './mql.js';
import { notImplemented } from './commandContext.js';

/** Index options this server honours (background is ignored by MongoDB too; storageEngine tunes storage). */
const INDEX_OPTIONS = [
  'key',
  'name',
  'unique',
  'sparse',
  'partialFilterExpression',
  'expireAfterSeconds',
  'v',
  'background',
  'hidden',
  'ns',
  'storageEngine',
];

/** Index options of MongoDB 7.0 that this server does not implement. */
const INDEX_OPTIONS_NOT_IMPLEMENTED = [
  'collation',
  'weights',
  'default_language',
  'language_override',
  'textIndexVersion',
  '2dsphereIndexVersion',
  'bits',
  'min',
  'max',
  'bucketSize',
  'coarsestIndexedLevel',
  'finestIndexedLevel',
  'wildcardProjection',
  'prepareUnique',
  'clustered',
  'dropDups',
  'columnstoreProjection',
  'columnstoreCompressor',
];

/** Index types of MongoDB 7.0 (a string in the key pattern) that this server does not build. */
const INDEX_TYPES = ['text', '2dsphere', '2d', 'hashed', 'geoHaystack', 'columnstore'];

function refuseIndexKey(key: unknown): void {
  if (!isPlainObject(key)) return;
  for (const [field, v] of Object.entries(key)) {
    if (field === '$**' || field.endsWith('.$**'))
      throw notImplemented('A wildcard index', 'index each field by name');
    if (typeof v !== 'string') continue;
    if (INDEX_TYPES.includes(v))
      throw notImplemented(`A '${v}' index (on '${field}')`, 'only ascending and descending keys are');
    throw new CommandError('CannotCreateIndex', `Unknown index plugin '${v}'`);
  }
}

export function parseIndexSpec(raw: unknown, ignoreUnknown: boolean): IndexSpec {
  if (!isPlainObject(raw))
    throw new CommandError('TypeMismatch', 'Each index specification must be an object');
  refuseIndexKey(raw.key);
  const problem = validateKeyPattern(raw.key);
  if (problem) throw new CommandError('CannotCreateIndex', problem);
  for (const k of Object.keys(raw)) {
    if (INDEX_OPTIONS.includes(k)) continue;
    if (INDEX_OPTIONS_NOT_IMPLEMENTED.includes(k)) throw notImplemented(`The index option '${k}'`);
    if (ignoreUnknown) continue;
    throw new CommandError(
      'InvalidIndexSpecificationOption',
      `The field '${k}' is not valid for an index specification. Specification: ${JSON.stringify(raw)}`,
    );
  }
  const key = raw.key as Document;
  const name = raw.name === undefined ? defaultIndexName(key) : raw.name;
  if (typeof name !== 'string' || name.length === 0)
    throw new CommandError('CannotCreateIndex', 'The index name must be a non-empty string');
  const spec: IndexSpec = { v: 2, key, name };
  if (raw.unique) spec.unique = true;
  if (raw.sparse) spec.sparse = true;
  if (raw.hidden) spec.hidden = true;
  if (raw.partialFilterExpression !== undefined) {
    if (!isPlainObject(raw.partialFilterExpression))
      throw new CommandError('TypeMismatch', 'partialFilterExpression must be an object');
    compileFilter(raw.partialFilterExpression);
    spec.partialFilterExpression = raw.partialFilterExpression;
  }
  if (raw.expireAfterSeconds !== undefined) {
    const e = Number(raw.expireAfterSeconds);
    if (!Number.isFinite(e) || e < 0)
      throw new CommandError(
        'CannotCreateIndex',
        `TTL index 'expireAfterSeconds' option must be a non-negative number`,
      );
    if (Object.keys(key).length !== 1)
      throw new CommandError(
        'CannotCreateIndex',
        'TTL indexes are single-field indexes, compound indexes do not support TTL',
      );
    spec.expireAfterSeconds = Math.floor(e);
  }
  if (name === '_id_' && canonicalKey(key) !== canonicalKey({ _id: 1 }))
    throw new CommandError('BadValue', `The index name '_id_' is reserved for the _id index`);
  return spec;
}

export function sameOptions(a: IndexSpec, b: IndexSpec): boolean {
  return (
    Boolean(a.unique) === Boolean(b.unique) &&
    Boolean(a.sparse) === Boolean(b.sparse) &&
    canonicalKey(a.partialFilterExpression ?? null) === canonicalKey(b.partialFilterExpression ?? null) &&
    a.expireAfterSeconds === b.expireAfterSeconds
  );
}

/**
 * commitQuorum: the members that must finish an index build. The one member builds it before the
 * reply, so 'votingMembers', 'majority', 0 and 1 are met; more members, or a tag, are not.
 */
export function checkCommitQuorum(q: unknown): void {
  if (q === undefined) return;
  if (q === 'votingMembers' || q === 'majority') return;
  if (typeof q === 'string')
    throw new CommandError(
      'UnsatisfiableCommitQuorum',
      `No write concern mode named '${q}' found in replica set configuration`,
    );
  const n = Number(numericValue(q));
  if (typeof q === 'boolean' || !Number.isInteger(n) || n < 0)
    throw new CommandError(
      'FailedToParse',
      `commitQuorum must be a non-negative number or a string; found ${String(q)}`,
    );
  if (n > 1)
    throw new CommandError(
      'UnsatisfiableCommitQuorum',
      `Not enough data-bearing nodes: commitQuorum ${n} asks for more members than this one-member replica set has`,
    );
}
