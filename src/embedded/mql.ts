/**
 * The MongoDB query language, through mingo: filters, projections, update operators and
 * aggregation pipelines. mingo's errors become MongoDB-shaped errors here.
 */
import type { Document } from 'bson';
import { Aggregator, Query, update as mingoUpdate } from 'mingo';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';

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
  return wrap('invalid projection', () => new Query(filter ?? {}).find(docs, projection).all() as Document[]);
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
