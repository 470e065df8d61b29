/**
 * What MongoDB can store, checked before a write so a value that cannot be stored fails with a clear
 * error naming where it is, instead of a raw encoder error or (worse) a silently changed value: BSON
 * turns a BigInt into a 64-bit integer (2n ** 80n + 7n becomes 7), a Set or an Error into {}, and
 * drops functions and symbols.
 */
import { BSON } from 'mongodb';

const MIB = 1024 * 1024;

/** MongoDB's largest document (maxBsonObjectSize). */
export const MAX_DOCUMENT_BYTES = 16 * MIB;
/**
 * The largest params a job may carry: the job document holds its params, its result, its error
 * history and its log tail, and must stay within MongoDB's 16 MiB, so params get 15 MiB of it.
 */
export const MAX_PARAMS_BYTES = 15 * MIB;
/** MongoDB stores documents nested at most this deep. */
export const MAX_NESTING_DEPTH = 100;

export function formatBytes(n: number): string {
  if (n >= MIB) return `${(n / MIB).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} bytes`;
}

function childPath(path: string, key: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

function preview(v: bigint): string {
  const s = v.toString();
  return s.length > 40 ? `${s.slice(0, 36)}…` : s;
}

/**
 * Why `value`, a field of a job document, cannot be stored as MongoDB stores it, naming the place
 * (e.g. "result.huge is a BigInt ..."); null when it can. Sizes are checked separately (bsonSize),
 * once this passed.
 */
export function whyUnstorable(value: unknown, path: string): string | null {
  const ancestors: object[] = [];
  const ancestorPaths: string[] = [];
  const walk = (v: unknown, p: string, depth: number): string | null => {
    switch (typeof v) {
      case 'bigint':
        return `${p} is a BigInt (${preview(v)}n); MongoDB has no integer of arbitrary size: store it as a string`;
      case 'symbol':
        return `${p} is a symbol, which MongoDB cannot store`;
      case 'function':
        return `${p} is a function, which MongoDB cannot store`;
      case 'object':
        break;
      default:
        return null;
    }
    if (v === null || v instanceof Date || v instanceof RegExp || ArrayBuffer.isView(v)) return null;
    if (depth > MAX_NESTING_DEPTH)
      return `${p} is nested deeper than ${MAX_NESTING_DEPTH} levels, MongoDB's limit`;
    const seen = ancestors.indexOf(v);
    if (seen >= 0) return `${p} refers back to ${ancestorPaths[seen]} (a circular structure)`;
    if (v instanceof Set) return `${p} is a Set, which MongoDB would store as {}: store an array`;
    if (v instanceof Error)
      return `${p} is an Error object, which MongoDB would store as {}: store its message instead`;
    ancestors.push(v);
    ancestorPaths.push(p);
    try {
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const why = walk(v[i], `${p}[${i}]`, depth + 1);
          if (why) return why;
        }
        return null;
      }
      const entries: [unknown, unknown][] = v instanceof Map ? [...v.entries()] : Object.entries(v);
      for (const [key, child] of entries) {
        if (typeof key !== 'string') return `${p} is a Map with a key that is not a string (${String(key)})`;
        if (key.includes('\u0000'))
          return `${childPath(p, key)}: a field name may not contain a NUL character`;
        const why = walk(child, childPath(p, key), depth + 1);
        if (why) return why;
      }
      return null;
    } finally {
      ancestors.pop();
      ancestorPaths.pop();
    }
  };
  // The job document is level 1, so an object in one of its fields is level 2.
  return walk(value, path, 2);
}

/** BSON size of a document (call whyUnstorable first: a circular value overflows the stack here). */
export function bsonSize(doc: Record<string, unknown>): number {
  return BSON.calculateObjectSize(doc, { ignoreUndefined: false });
}

/** A document's length and its end byte: what {} takes, and what each element adds to. */
const EMPTY_DOC_BYTES = 5;

/** Bytes the element `key` of `doc` takes in its BSON (0 when doc has no such own field). */
function ownElementBytes(doc: Record<string, unknown>, key: string): number {
  if (!Object.prototype.hasOwnProperty.call(doc, key)) return 0;
  return bsonSize({ [key]: doc[key] }) - EMPTY_DOC_BYTES;
}

/** Room kept for what a settlement adds besides the result (state, lease, resources, stamps). */
const SETTLE_SLACK_BYTES = 16 * 1024;

/**
 * Why a handler's result cannot be stored on its job: not storable at all, or the job document
 * would pass MongoDB's 16 MiB with it. `job` is the job as claimed; `logTail` goes in with the result.
 */
export function whyResultUnstorable(
  job: Record<string, unknown>,
  result: unknown,
  logTail: string | null | undefined,
): string | null {
  const why = whyUnstorable(result, 'result');
  if (why) return why;
  const resultBytes = bsonSize({ result });
  // The size of {...job, result, logTail}, without copying the job: its size with those two fields'
  // elements exchanged for the new ones (an element's size does not depend on its place).
  const tail = logTail ?? null;
  const docBytes =
    bsonSize(job) -
    ownElementBytes(job, 'result') -
    ownElementBytes(job, 'logTail') +
    (resultBytes - EMPTY_DOC_BYTES) +
    (bsonSize({ logTail: tail }) - EMPTY_DOC_BYTES) +
    SETTLE_SLACK_BYTES;
  if (docBytes <= MAX_DOCUMENT_BYTES) return null;
  return (
    `result takes ${formatBytes(resultBytes)} as BSON; with the job's params and history the job document ` +
    `would take ${formatBytes(docBytes)}, over MongoDB's ${formatBytes(MAX_DOCUMENT_BYTES)} document limit`
  );
}
