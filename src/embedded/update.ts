/**
 * Computing the new version of a document from an update: operators, a replacement document or
 * an aggregation pipeline; and the document an upsert starts from.
 */
import { ObjectId, Timestamp, type Document } from 'bson';
import { CommandError } from './errors.js';
import { canonicalKey, compareValues, deepClone, isPlainObject, typeRank, Rank } from './bsonOrder.js';
import { applyOperators, runPipeline } from './mql.js';
import { checkPipeline } from './mqlRefusals.js';
import { arithmetic, isInt32Number, toPlainNumbers } from './numbers.js';

const OPERATORS = new Set([
  '$set',
  '$unset',
  '$inc',
  '$mul',
  '$rename',
  '$min',
  '$max',
  '$currentDate',
  '$addToSet',
  '$pop',
  '$pull',
  '$push',
  '$pullAll',
  '$bit',
  '$setOnInsert',
]);
const PIPELINE_STAGES = new Set(['$addFields', '$set', '$project', '$unset', '$replaceRoot', '$replaceWith']);

export type UpdateSpec = Document | Document[];

export interface UpdateOptions {
  arrayFilters?: Document[];
  /** The filter that selected the document, for the positional `$` operator. */
  filter?: Document;
  /** True when the document is being created by an upsert ($setOnInsert applies). */
  inserting?: boolean;
  variables?: Document;
}

export function isReplacement(u: UpdateSpec): boolean {
  if (Array.isArray(u)) return false;
  const keys = Object.keys(u);
  return keys.length === 0 || !(keys[0] as string).startsWith('$');
}

export function validateUpdate(u: unknown): asserts u is UpdateSpec {
  if (Array.isArray(u)) {
    for (const stage of u) {
      if (!isPlainObject(stage) || Object.keys(stage).length !== 1)
        throw new CommandError(
          'FailedToParse',
          'Each pipeline update stage must be an object with exactly one field',
        );
      const name = Object.keys(stage)[0] as string;
      if (!PIPELINE_STAGES.has(name)) {
        throw new CommandError('InvalidOptions', `${name} is not allowed to be used within an update`);
      }
    }
    checkPipeline(u);
    return;
  }
  if (!isPlainObject(u))
    throw new CommandError('FailedToParse', 'Update argument must be either an object or an array');
  const keys = Object.keys(u);
  if (keys.length === 0 || !(keys[0] as string).startsWith('$')) {
    for (const k of keys)
      if (k.startsWith('$'))
        throw new CommandError(
          'DollarPrefixedFieldName',
          `The dollar ($) prefixed field '${k}' in '${k}' is not valid for storage.`,
        );
    return;
  }
  const seen: string[] = [];
  for (const op of keys) {
    if (!op.startsWith('$') || !OPERATORS.has(op)) {
      throw new CommandError(
        'FailedToParse',
        `Unknown modifier: ${op}. Expected a valid update modifier or pipeline-style update specified as an array`,
      );
    }
    const args = u[op] as unknown;
    if (!isPlainObject(args))
      throw new CommandError(
        'FailedToParse',
        `Modifiers operate on fields but we found type ${typeof args} instead. For example: {$mod: {<field>: ...}} not {${op}: ${String(args)}}`,
      );
    for (const path of Object.keys(args)) {
      const targets = op === '$rename' ? [path, String(args[path])] : [path];
      for (const t of targets) {
        const base = t.replace(/\.\$(\[[^\]]*\])?/g, '');
        for (const other of seen) {
          if (other === base || other.startsWith(base + '.') || base.startsWith(other + '.')) {
            throw new CommandError(
              'ConflictingUpdateOperators',
              `Updating the path '${t}' would create a conflict at '${other}'`,
            );
          }
        }
        seen.push(base);
      }
      if ((op === '$inc' || op === '$mul') && typeRank(args[path]) !== Rank.Number) {
        throw new CommandError(
          'TypeMismatch',
          `Cannot ${op === '$inc' ? 'increment' : 'multiply'} with non-numeric argument: {${path}: ${String(args[path])}}`,
        );
      }
    }
  }
}

/** The new version of `doc` (never mutated) after applying `u`. Keeps _id first and unchanged. */
export function applyUpdate(doc: Document, u: UpdateSpec, opts: UpdateOptions = {}): Document {
  return applyUpdateReporting(doc, u, opts).doc;
}

/**
 * applyUpdate, telling whether the update took the direct path: then every byte it added to the
 * document came from the update itself (values, field names) or is a computed number or date of at
 * most 16 bytes, one per path, so the new version is at most GROWTH_PER_REQUEST_BYTE times the
 * update's size larger than the old one (an empty document per new path level: 7 bytes and the
 * level's name, against the name and its dot in the path). `plan`, when given, is planSimpleUpdate(u):
 * the same result, the update's part of the direct path worked out once for many documents.
 */
export function applyUpdateReporting(
  doc: Document,
  u: UpdateSpec,
  opts: UpdateOptions = {},
  plan?: SimplePlan,
): { doc: Document; direct: boolean } {
  if (plan !== undefined && !opts.inserting) {
    // Stored documents are never mutated: the direct path copies only what it changes.
    const next = { ...doc };
    // An array or a non-document on a path, or a non-number where $inc or $mul applies: the general
    // path decides, from scratch (and refuses the non-number as MongoDB does).
    if (applySteps(next, plan.steps)) return { doc: idFirst(next), direct: true };
  }
  let next: Document;
  let direct = false;
  if (Array.isArray(u)) {
    const out = runPipeline([toPlainNumbers(doc)], u, opts.variables ? { variables: opts.variables } : {});
    next = out[0] ?? {};
    if (!('_id' in next)) next = { _id: doc._id, ...next };
  } else if (isReplacement(u)) {
    if ('_id' in u && canonicalKey(u._id) !== canonicalKey(doc._id)) throw immutableId(doc);
    next = { _id: doc._id, ...deepClone(u) };
    next._id = doc._id;
  } else {
    const modifier: Document = {};
    for (const [op, args] of Object.entries(u)) {
      if (op === '$setOnInsert') {
        if (opts.inserting) modifier.$set = { ...(modifier.$set ?? {}), ...args };
        continue;
      }
      if (op === '$set') modifier.$set = { ...args, ...(modifier.$set ?? {}) };
      else modifier[op] = args;
    }
    const base = stripIdUpdates(doc, modifier, opts.inserting ?? false);
    checkNumericTargets(base, modifier);
    rewriteAddToSet(base, modifier);
    rewriteCurrentDate(modifier);
    for (const op of Object.keys(modifier))
      if (Object.keys(modifier[op] as Document).length === 0) delete modifier[op];
    // Stored documents are never mutated: the direct path copies only what it changes.
    next = { ...base };
    direct = true;
    if (Object.keys(modifier).length > 0 && !applySimple(next, modifier)) {
      direct = false;
      next = deepClone(base);
      applyOperators(next, modifier, opts.arrayFilters, opts.inserting ? undefined : opts.filter);
    }
    if (opts.inserting) return { doc: idFirst(next), direct };
  }
  // The same value object (the common case: the update left _id alone) needs no comparison.
  if (!('_id' in next) || (next._id !== doc._id && canonicalKey(next._id) !== canonicalKey(doc._id))) {
    if ('_id' in doc && doc._id !== undefined) throw immutableId(doc);
  }
  return { doc: idFirst(next), direct };
}

/** See applyUpdateReporting: a bound, with room to spare, on the growth per byte of a direct update. */
export const GROWTH_PER_REQUEST_BYTE = 8;

const SIMPLE_OPS = new Set(['$set', '$unset', '$inc', '$mul', '$min', '$max']);
const ARITHMETIC = new Set(['$inc', '$mul']);
/** A path part that names an array element: applySimple leaves such paths to the general engine. */
const DIGITS = /^\d+$/;

/**
 * $set, $unset, $inc, $mul, $min and $max on plain dotted paths through embedded documents, applied directly
 * (the common case, and far cheaper than the general operator engine). Fields are processed in
 * lexicographic order, as MongoDB 5.0+ does. Returns false, having changed nothing, when the
 * update needs the general engine (other operators, positional paths, arrays on the way).
 */
function applySimple(doc: Document, modifier: Document): boolean {
  const steps = simpleSteps(modifier);
  return steps !== undefined && applySteps(doc, steps);
}

/** One change of applySimple: the operator, the path's parts, the update's value, whether it is $inc or $mul. */
type Step = [string, string[], unknown, boolean];

/**
 * applySimple's changes in the order it makes them, from the update alone; undefined when the update
 * needs the general engine whatever the document (another operator, a positional or empty path part,
 * a non-numeric $inc or $mul argument).
 */
function simpleSteps(modifier: Document): Step[] | undefined {
  const steps: Step[] = [];
  for (const [op, args] of Object.entries(modifier)) {
    if (!SIMPLE_OPS.has(op)) return undefined;
    const arithmetic = ARITHMETIC.has(op);
    for (const path of Object.keys(args as Document).sort()) {
      const parts = path.split('.');
      for (const p of parts) if (p === '' || p.startsWith('$') || DIGITS.test(p)) return undefined;
      const value = (args as Document)[path] as unknown;
      if (arithmetic && typeRank(value) !== Rank.Number) return undefined;
      steps.push([op, parts, value, arithmetic]);
    }
  }
  return steps;
}

/**
 * Makes `steps` on `doc` (a copy of the stored version, whose embedded documents are copied on write);
 * false, having changed nothing, when the document needs the general engine (a non-document on a
 * path, a non-number where $inc or $mul applies).
 */
function applySteps(doc: Document, steps: Step[]): boolean {
  for (let s = 0; s < steps.length; s++) {
    const [, parts, , arithmetic] = steps[s] as Step;
    let cur: unknown = doc;
    for (let i = 0; i < parts.length - 1; i++) {
      cur = (cur as Document)[parts[i] as string];
      if (cur === undefined) break;
      if (!isPlainObject(cur)) return false;
    }
    if (arithmetic) {
      const target = isPlainObject(cur) ? cur[parts[parts.length - 1] as string] : undefined;
      if (target !== undefined && target !== null && typeRank(target) !== Rank.Number) return false;
    }
  }
  let copied: Set<Document> | undefined;
  for (const [op, parts, value] of steps) {
    let holder = doc;
    const last = parts[parts.length - 1] as string;
    let missing = false;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i] as string;
      if (holder[p] === undefined) {
        if (op === '$unset') {
          missing = true;
          break;
        }
        holder[p] = {};
        (copied ??= new Set()).add(holder[p] as Document);
      } else if (!copied?.has(holder[p] as Document)) {
        // Copy on write: the embedded document may be shared with the stored version.
        holder[p] = { ...(holder[p] as Document) };
        (copied ??= new Set()).add(holder[p] as Document);
      }
      holder = holder[p] as Document;
    }
    if (missing) continue;
    // The update's own value, not a copy: stored documents are never changed in place (a later update
    // copies what it changes), so the documents of one updateMany can share it as versions share theirs.
    if (op === '$set') holder[last] = value;
    else if (op === '$unset') delete holder[last];
    else if (op === '$min' || op === '$max') {
      const current = holder[last] as unknown;
      const c = current === undefined ? 0 : compareValues(value, current);
      if (current === undefined || (op === '$min' ? c < 0 : c > 0)) holder[last] = value;
    } else {
      const current = holder[last] as unknown;
      if (
        op === '$inc' &&
        typeof current === 'number' &&
        typeof value === 'number' &&
        isInt32Number(current) &&
        isInt32Number(value)
      ) {
        // int32 + int32 with no overflow: the common case stays cheap.
        const sum = current + value;
        holder[last] =
          sum >= -2147483648 && sum <= 2147483647 ? sum : arithmetic('$inc', current, value, parts.join('.'));
      } else {
        holder[last] = arithmetic(
          op as '$inc' | '$mul',
          current === null ? undefined : current,
          value,
          parts.join('.'),
        );
      }
    }
  }
  return true;
}

/**
 * _id may be $set to the value it already has (or to anything while an upsert inserts);
 * any other change to it is refused with ImmutableField.
 */
function stripIdUpdates(doc: Document, modifier: Document, inserting: boolean): Document {
  let base = doc;
  for (const [op, args] of Object.entries(modifier)) {
    for (const path of Object.keys(args as Document)) {
      if (path !== '_id' && !path.startsWith('_id.')) continue;
      const value = (args as Document)[path] as unknown;
      if (op === '$set' && path === '_id' && (inserting || canonicalKey(value) === canonicalKey(doc._id))) {
        if (inserting) base = { ...base, _id: value };
        delete (args as Document)[path];
        continue;
      }
      throw immutableId(doc);
    }
  }
  return base;
}

/** $addToSet with MongoDB's semantics: only values absent from the array (compared as BSON) are appended. */
function rewriteAddToSet(doc: Document, modifier: Document): void {
  const args = modifier.$addToSet as Document | undefined;
  if (!args) return;
  delete modifier.$addToSet;
  for (const [path, spec] of Object.entries(args)) {
    const values = isPlainObject(spec) && '$each' in spec ? (spec.$each as unknown[]) : [spec];
    if (!Array.isArray(values))
      throw new CommandError(
        'TypeMismatch',
        `The argument to $each in $addToSet must be an array but it was of type ${typeof values}`,
      );
    const current = getPath(doc, path);
    if (current !== undefined && !Array.isArray(current)) {
      throw new CommandError(
        'BadValue',
        `Cannot apply $addToSet to non-array field. Field named '${path.split('.').pop() ?? path}' has non-array type ${typeName(current)}`,
      );
    }
    const seen = new Set((current ?? []).map(canonicalKey));
    const add: unknown[] = [];
    for (const v of values) {
      const k = canonicalKey(v);
      if (seen.has(k)) continue;
      seen.add(k);
      add.push(v);
    }
    if (current === undefined) modifier.$set = { ...(modifier.$set ?? {}), [path]: add };
    else if (add.length > 0) modifier.$push = { ...(modifier.$push ?? {}), [path]: { $each: add } };
  }
}

let lastStampSecs = 0;
let lastStampInc = 0;

/** $currentDate becomes a $set of the current date, or of a fresh timestamp when asked. */
function rewriteCurrentDate(modifier: Document): void {
  const args = modifier.$currentDate as Document | undefined;
  if (!args) return;
  delete modifier.$currentDate;
  const set: Document = { ...(modifier.$set ?? {}) };
  for (const [path, spec] of Object.entries(args)) {
    if (isPlainObject(spec) && spec.$type === 'timestamp') {
      const secs = Math.floor(Date.now() / 1000);
      lastStampInc = secs === lastStampSecs ? lastStampInc + 1 : 1;
      lastStampSecs = secs;
      set[path] = new Timestamp({ t: secs, i: lastStampInc });
    } else if (spec === true || (isPlainObject(spec) && spec.$type === 'date')) {
      set[path] = new Date();
    } else {
      throw new CommandError(
        'BadValue',
        `${JSON.stringify(spec)} is not valid type for $currentDate. Please use a boolean ('true') or a $type expression ({$type: 'timestamp/date'}).`,
      );
    }
  }
  modifier.$set = set;
}

function checkNumericTargets(doc: Document, modifier: Document): void {
  for (const op of ['$inc', '$mul'] as const) {
    const args = modifier[op] as Document | undefined;
    if (!args) continue;
    for (const path of Object.keys(args)) {
      const v = getPath(doc, path);
      if (v !== undefined && v !== null && typeRank(v) !== Rank.Number) {
        throw new CommandError(
          'TypeMismatch',
          `Cannot apply ${op} to a value of non-numeric type. {_id: ${String(doc._id)}} has the field '${path.split('.').pop() ?? path}' of non-numeric type ${typeName(v)}`,
        );
      }
    }
  }
}

/**
 * The direct path of an operator update worked out from the update alone (its changes, in order), for
 * an update applied to many documents: applyUpdateReporting then does per document only what depends
 * on the document. Undefined when the update takes the general path whatever the document: a pipeline
 * or a replacement, an operator other than $set, $unset, $inc, $mul, $min, $max (and $setOnInsert,
 * which only an upsert's insert applies, and a plan is never used for), a path through _id, or a path
 * or value the direct path leaves to the general engine.
 */
export interface SimplePlan {
  readonly steps: Step[];
}

export function planSimpleUpdate(u: UpdateSpec): SimplePlan | undefined {
  if (Array.isArray(u) || isReplacement(u)) return undefined;
  const modifier: Document = {};
  for (const op of Object.keys(u)) {
    if (op === '$setOnInsert') continue;
    const args = u[op] as Document;
    const paths = Object.keys(args);
    for (const path of paths) if (path === '_id' || path.startsWith('_id.')) return undefined;
    // An operator with no fields is dropped, as applyUpdateReporting drops it.
    if (paths.length > 0) modifier[op] = args;
  }
  const steps = simpleSteps(modifier);
  return steps && { steps };
}

function typeName(v: unknown): string {
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'date';
  if (isPlainObject(v)) return 'object';
  return typeof v;
}

function getPath(doc: Document, path: string): unknown {
  let cur: unknown = doc;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Document)[part];
  }
  return cur;
}

function immutableId(doc: Document): CommandError {
  return new CommandError(
    'ImmutableField',
    `Performing an update on the path '_id' would modify the immutable field '_id'`,
    doc._id === undefined ? {} : {},
  );
}

export function idFirst(doc: Document): Document {
  // The common case, _id already first, is told from the first own key without listing them all.
  for (const k in doc) {
    if (k === '_id' && Object.hasOwn(doc, '_id')) return doc;
    break;
  }
  if (!('_id' in doc)) return doc;
  const keys = Object.keys(doc);
  if (keys[0] === '_id') return doc;
  const out: Document = { _id: doc._id };
  for (const k of keys) if (k !== '_id') out[k] = doc[k];
  return out;
}

/** A new document for insertion: _id generated when absent, and placed first. */
export function withId(doc: Document): Document {
  if (!('_id' in doc) || doc._id === undefined) return { _id: new ObjectId(), ...doc };
  return idFirst(doc);
}

/** The document an upsert starts from: the equality conditions of its filter. */
export function upsertSeed(filter: Document): Document {
  const seed: Document = {};
  collectEqualities(filter, seed);
  return seed;
}

function collectEqualities(filter: Document, seed: Document): void {
  for (const [k, v] of Object.entries(filter)) {
    if (k === '$and' && Array.isArray(v)) {
      for (const sub of v) if (isPlainObject(sub)) collectEqualities(sub, seed);
      continue;
    }
    if (k.startsWith('$')) continue;
    let value: unknown;
    if (isPlainObject(v) && Object.keys(v).some((x) => x.startsWith('$'))) {
      if ('$eq' in v) value = v.$eq;
      else if (Array.isArray(v.$in) && v.$in.length === 1) value = v.$in[0];
      else continue;
    } else value = v;
    if (value instanceof RegExp) continue;
    setPath(seed, k, deepClone(value));
  }
}

function setPath(doc: Document, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = doc;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i] as string;
    if (!isPlainObject(cur[p])) cur[p] = {};
    cur = cur[p] as Document;
  }
  cur[parts[parts.length - 1] as string] = value;
}

/** Builds the document an upsert inserts. */
export function buildUpsert(filter: Document, u: UpdateSpec, opts: UpdateOptions): Document {
  const seed = upsertSeed(filter);
  if (!Array.isArray(u) && isReplacement(u)) {
    const doc = deepClone(u);
    if (!('_id' in doc) && '_id' in seed) doc._id = seed._id;
    return withId(doc);
  }
  const base = withId(seed);
  const hadId = '_id' in seed;
  const next = applyUpdate(base, u, { ...opts, inserting: true });
  if (!hadId && !('_id' in next)) next._id = base._id;
  return idFirst(next);
}
