/**
 * The MongoDB query language, through mingo: filters, projections, update operators and
 * aggregation pipelines. mingo's errors become MongoDB-shaped errors here.
 */
import type { Document } from 'bson';
import { Aggregator, Query, update as mingoUpdate } from 'mingo';
import { CommandError } from './errors.js';
import { deepClone, isPlainObject } from './bsonOrder.js';

export interface Matcher {
  test(doc: Document): boolean;
}

const MATCH_ALL: Matcher = { test: () => true };

function wrap<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof CommandError) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    throw new CommandError('BadValue', `${what}: ${msg}`);
  }
}

export function compileFilter(filter: unknown, variables?: Document): Matcher {
  if (filter === undefined || filter === null) return MATCH_ALL;
  if (!isPlainObject(filter)) throw new CommandError('TypeMismatch', 'filter must be an object');
  if (Object.keys(filter).length === 0) return MATCH_ALL;
  rejectUnsupported(filter);
  const q = wrap('invalid filter', () => new Query(filter, variables ? { variables } : undefined));
  return { test: (doc) => wrap('error evaluating filter', () => q.test(doc)) };
}

const UNSUPPORTED_QUERY_OPS = new Set(['$where', '$text', '$near', '$nearSphere', '$geoWithin', '$geoIntersects', '$jsonSchema']);

function rejectUnsupported(v: unknown): void {
  if (Array.isArray(v)) {
    for (const x of v) rejectUnsupported(x);
    return;
  }
  if (!isPlainObject(v)) return;
  for (const [k, x] of Object.entries(v)) {
    if (UNSUPPORTED_QUERY_OPS.has(k)) throw new CommandError('BadValue', `Query operator ${k} is not supported by the embedded server`);
    rejectUnsupported(x);
  }
}

export function project(docs: Document[], projection: unknown, filter?: Document): Document[] {
  if (projection === undefined || projection === null) return docs;
  if (!isPlainObject(projection)) throw new CommandError('TypeMismatch', 'projection must be an object');
  if (Object.keys(projection).length === 0) return docs;
  const slices = Object.entries(projection).filter(([, v]) => isPlainObject(v) && '$slice' in v);
  const excluding = Object.entries(projection).some(([k, v]) => k !== '_id' && (v === 0 || v === false));
  const including = Object.entries(projection).some(([k, v]) => k !== '_id' && !(v === 0 || v === false) && !(isPlainObject(v) && '$slice' in v));
  if (slices.length > 0 && (excluding || !including)) {
    // mingo counts $slice as an inclusion; in MongoDB it sits alongside exclusions too.
    const rest: Document = {};
    for (const [k, v] of Object.entries(projection)) if (!(isPlainObject(v) && '$slice' in v)) rest[k] = v;
    const base = project(docs, rest, filter);
    return base.map((d) => applySlices(deepClone(d), slices));
  }
  return wrap('invalid projection', () => new Query(filter ?? {}).find(docs, projection).all() as Document[]);
}

function applySlices(doc: Document, slices: Array<[string, unknown]>): Document {
  for (const [path, spec] of slices) {
    const arg = (spec as Document).$slice as unknown;
    const parts = path.split('.');
    let holder: unknown = doc;
    for (const p of parts.slice(0, -1)) holder = isPlainObject(holder) ? holder[p] : undefined;
    const last = parts[parts.length - 1] as string;
    if (!isPlainObject(holder) || !Array.isArray(holder[last])) continue;
    const arr = holder[last] as unknown[];
    if (typeof arg === 'number') holder[last] = arg >= 0 ? arr.slice(0, arg) : arr.slice(arg);
    else if (Array.isArray(arg) && arg.length === 2) {
      const [skip, n] = arg as [number, number];
      const start = skip < 0 ? Math.max(0, arr.length + skip) : skip;
      holder[last] = arr.slice(start, start + n);
    } else throw new CommandError('BadValue', `Invalid $slice argument for '${path}'`);
  }
  return doc;
}

export function runPipeline(docs: Document[], pipeline: Document[], options: { collectionResolver?: (name: string) => Document[]; variables?: Document } = {}): Document[] {
  return wrap('PlanExecutor error during aggregation', () => {
    const agg = new Aggregator(pipeline, {
      ...(options.collectionResolver ? { collectionResolver: options.collectionResolver } : {}),
      ...(options.variables ? { variables: options.variables } : {}),
    });
    return agg.run(docs) as Document[];
  });
}

/** Applies update operators in place; returns nothing useful — callers diff documents themselves. */
export function applyOperators(doc: Document, modifier: Document, arrayFilters: Document[] | undefined, filter: Document | undefined): void {
  wrap('update failed', () => mingoUpdate(doc, modifier, arrayFilters ?? [], filter ?? {}, { cloneMode: 'deep' }));
}

/** Evaluates the expressions of a `let` document into plain variable values. */
export function evaluateLet(letDoc: Document | undefined): Document | undefined {
  if (!letDoc || Object.keys(letDoc).length === 0) return undefined;
  const projection: Document = { _id: 0 };
  for (const [k, v] of Object.entries(letDoc)) projection[k] = isPlainObject(v) || typeof v === 'string' ? v : { $literal: v };
  const [out] = runPipeline([{ _id: 0 }], [{ $project: projection }]);
  return { ...letDoc, ...(out ?? {}) };
}
