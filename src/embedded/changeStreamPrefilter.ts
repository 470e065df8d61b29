/**
 * Which changes a stream's leading $match cannot let through, told from the change itself before the
 * stream renders it. A daemon's claim watcher matches inserts and updates whose state became queued or
 * retrying; without this, every claim and every completion of a job was rendered (resume token, cluster
 * time, the update's description diffed from the two versions) only for the $match to drop it.
 *
 * Only conditions whose answer on the rendered event is certain are read: the operation type, and a
 * string field of the update's updatedFields, of an insert's or replace's fullDocument, or of the
 * documentKey, compared for equality with strings ({f: 's'}, {f: {$eq: 's'}}, {f: {$in: ['s', ...]}}).
 * A rendered field compared so is missing or holds the change's own value, so "missing, or a string
 * none of them equals" certainly fails the condition. Also an update's removedFields holding a
 * top-level name (the field was in the old version and is not in the new), and {$type: 'string'} on
 * a field of an insert's or replace's fullDocument (dataset-status's watcher asks both). Anything else (other operators, other fields, a
 * value of another type) is left to the $match itself: the prefilter answers "maybe", and the change is
 * rendered and matched as before.
 */
import type { Document } from 'bson';
import { isPlainObject } from './bsonOrder.js';
import type { ChangeEvent } from './changeLog.js';

/** True when the stream's $match certainly drops the change. */
export type Prefilter = (e: ChangeEvent) => boolean;

/** The prefilter of a $match filter, or undefined when no part of it can be decided early. */
export function compilePrefilter(filter: unknown): Prefilter | undefined {
  if (!isPlainObject(filter)) return undefined;
  return conjunction(filter);
}

/** A document of conditions, all of which must hold: it certainly fails when one of them certainly does. */
function conjunction(filter: Document): Prefilter | undefined {
  const parts: Prefilter[] = [];
  for (const key of Object.keys(filter)) {
    const arg = filter[key] as unknown;
    let p: Prefilter | undefined;
    if (key === '$and' && Array.isArray(arg)) p = all(arg);
    else if (key === '$or' && Array.isArray(arg)) p = any(arg);
    else if (!key.startsWith('$')) p = condition(key, arg);
    if (p) parts.push(p);
  }
  if (parts.length === 0) return undefined;
  if (parts.length === 1) return parts[0];
  return (e) => parts.some((p) => p(e));
}

/** $and: fails certainly when one branch does. */
function all(branches: unknown[]): Prefilter | undefined {
  const parts: Prefilter[] = [];
  for (const b of branches) {
    const p = isPlainObject(b) ? conjunction(b) : undefined;
    if (p) parts.push(p);
  }
  if (parts.length === 0) return undefined;
  return (e) => parts.some((p) => p(e));
}

/** $or: fails certainly only when every branch does, so each branch must be decidable. */
function any(branches: unknown[]): Prefilter | undefined {
  if (branches.length === 0) return undefined;
  const parts: Prefilter[] = [];
  for (const b of branches) {
    const p = isPlainObject(b) ? conjunction(b) : undefined;
    if (!p) return undefined;
    parts.push(p);
  }
  return (e) => parts.every((p) => p(e));
}

/** The strings a condition accepts by equality, or undefined for any other condition. */
function acceptedStrings(arg: unknown): Set<string> | undefined {
  if (typeof arg === 'string') return new Set([arg]);
  if (!isPlainObject(arg)) return undefined;
  const ops = Object.keys(arg);
  if (ops.length !== 1) return undefined;
  const v = arg[ops[0] as string] as unknown;
  if (ops[0] === '$eq' && typeof v === 'string') return new Set([v]);
  if (ops[0] === '$in' && Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string'))
    return new Set(v as string[]);
  return undefined;
}

const UPDATED = 'updateDescription.updatedFields.';
const FULL = 'fullDocument.';
const REMOVED = 'updateDescription.removedFields';

/** {$type: 'string'}: a string, or an array holding one, passes. */
function isStringType(arg: unknown): boolean {
  return isPlainObject(arg) && Object.keys(arg).length === 1 && arg.$type === 'string';
}

/** A condition on one path of the rendered event, when it is one this module can decide. */
function condition(path: string, arg: unknown): Prefilter | undefined {
  if (path.startsWith(FULL) && isStringType(arg)) {
    const field = path.slice(FULL.length);
    if (!plainField(field)) return undefined;
    return (e) => {
      if (e.operationType === 'update') return false;
      if (e.operationType !== 'insert' && e.operationType !== 'replace') return true;
      const doc = e.fullDocument;
      if (!doc || !Object.hasOwn(doc, field)) return true;
      const v = doc[field] as unknown;
      return typeof v !== 'string' && !Array.isArray(v);
    };
  }
  const accepted = acceptedStrings(arg);
  if (!accepted) return undefined;
  if (path === REMOVED) {
    // removedFields lists a removed top-level field by its name; a name with a dot (or a '$') could
    // also be the path of a nested removal, so only plain names are decided.
    const names = [...accepted];
    if (!names.every(plainField)) return undefined;
    return (e) => {
      if (e.operationType !== 'update') return true;
      const before = e.before;
      const after = e.fullDocument;
      if (!before || !after) return true;
      return !names.some((f) => Object.hasOwn(before, f) && !Object.hasOwn(after, f));
    };
  }
  // Where the rendered event's value is certainly missing or not accepted: true; else false (maybe).
  const fails = (v: unknown, present: boolean): boolean =>
    !present || (typeof v === 'string' && !accepted.has(v));
  if (path === 'operationType') return (e) => !accepted.has(e.operationType);
  if (path === 'documentKey._id') {
    return (e) => {
      const key = e.documentKey;
      return fails(key?._id, key !== undefined && Object.hasOwn(key, '_id'));
    };
  }
  if (path.startsWith(UPDATED)) {
    const field = path.slice(UPDATED.length);
    if (!plainField(field)) return undefined;
    return (e) => {
      // Only an update event has an updateDescription.
      if (e.operationType !== 'update') return true;
      const before = e.before;
      const after = e.fullDocument;
      if (!before || !after) return true;
      // A field the update did not change (the very same value) is not among updatedFields; a changed
      // string is reported as itself.
      if (!Object.hasOwn(after, field)) return true;
      const v = after[field] as unknown;
      if (Object.hasOwn(before, field) && before[field] === v) return true;
      return typeof v === 'string' && !accepted.has(v);
    };
  }
  if (path.startsWith(FULL)) {
    const field = path.slice(FULL.length);
    if (!plainField(field)) return undefined;
    return (e) => {
      // An update's fullDocument depends on the stream's mode (and a lookup): left to the $match.
      if (e.operationType === 'update') return false;
      if (e.operationType !== 'insert' && e.operationType !== 'replace') return true;
      const doc = e.fullDocument;
      if (!doc) return true;
      return fails(doc[field], Object.hasOwn(doc, field));
    };
  }
  return undefined;
}

/** A top-level field name: one step of a path (a name with a dot, or '$', is read as more). */
function plainField(f: string): boolean {
  return f.length > 0 && !f.includes('.') && !f.startsWith('$');
}
