/**
 * The MongoDB query language, through mingo: filters, projections, update operators and
 * aggregation pipelines. mingo's errors become MongoDB-shaped errors here.
 */
import type { Document } from 'bson';
import { Query, update as mingoUpdate } from 'mingo';
import type { CollationSpec } from 'mingo/types';
import { Aggregator as BaseAggregator } from 'mingo/aggregator';
import { AGGREGATION_CONTEXT } from './percentile.js';
import { CommandError } from './errors.js';
import { deepClone, isPlainObject } from './bsonOrder.js';
import type { Collation } from './collation.js';
import { compileDocFilter, NeedsFallback } from './matcher.js';
import { toPlainNumbers } from './numbers.js';
import { compileProjection } from './projection.js';
import { checkExpression, checkFilter } from './mqlRefusals.js';

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

/**
 * A filter compiled once for a whole command. The native compiler (matcher.ts) handles the query
 * language; a filter using an operator it leaves to mingo runs through mingo on plain-number copies.
 */
export function compileFilter(filter: unknown, variables?: Document, collation?: Collation): Matcher {
  if (filter === undefined || filter === null) return MATCH_ALL;
  if (!isPlainObject(filter)) throw new CommandError('TypeMismatch', 'filter must be an object');
  if (Object.keys(filter).length === 0) return MATCH_ALL;
  checkFilter(filter);
  const mingoOptions = variables ? { variables: toPlainNumbers(variables) } : undefined;
  try {
    const test = compileDocFilter(filter, {
      collation,
      expr: (expr) => {
        const q = wrap('invalid $expr', () => new Query({ $expr: toPlainNumbers(expr) }, mingoOptions));
        return (doc) => wrap('error evaluating $expr', () => q.test(toPlainNumbers(doc)));
      },
    });
    return { test };
  } catch (err) {
    if (!(err instanceof NeedsFallback)) throw err;
  }
  if (collation)
    throw new CommandError(
      'BadValue',
      `collation is not supported together with ${describeFallback(filter)} by the jobd embedded server`,
    );
  const q = wrap('invalid filter', () => new Query(toPlainNumbers(filter), mingoOptions));
  return { test: (doc) => wrap('error evaluating filter', () => q.test(toPlainNumbers(doc))) };
}

function describeFallback(filter: Document): string {
  const m = /"(\$bits\w+)"/.exec(JSON.stringify(filter));
  return m ? `the ${m[1] as string} operator` : 'this filter';
}

export function project(docs: Document[], projection: unknown, filter?: Document): Document[] {
  if (projection === undefined || projection === null) return docs;
  if (!isPlainObject(projection)) throw new CommandError('TypeMismatch', 'projection must be an object');
  if (Object.keys(projection).length === 0) return docs;
  checkProjection(projection);
  const direct = compileProjection(projection);
  if (direct) return docs.map(direct);
  const slices = Object.entries(projection).filter(([, v]) => isPlainObject(v) && '$slice' in v);
  const excluding = Object.entries(projection).some(([k, v]) => k !== '_id' && (v === 0 || v === false));
  const including = Object.entries(projection).some(
    ([k, v]) => k !== '_id' && !(v === 0 || v === false) && !(isPlainObject(v) && '$slice' in v),
  );
  if (slices.length > 0 && (excluding || !including)) {
    // mingo counts $slice as an inclusion; in MongoDB it sits alongside exclusions too.
    const rest: Document = {};
    for (const [k, v] of Object.entries(projection)) if (!(isPlainObject(v) && '$slice' in v)) rest[k] = v;
    const base = project(docs, rest, filter);
    return base.map((d) => applySlices(deepClone(d), slices));
  }
  // Only the positional operator needs the filter; re-running it would ignore the command's collation.
  const positional = Object.keys(projection).some((k) => k.endsWith('.$'));
  return wrap(
    'invalid projection',
    () => new Query(positional ? (filter ?? {}) : {}).find(docs, projection).all() as Document[],
  );
}

/** Projection operators ($slice, $elemMatch) and aggregation expressions in a find projection. */
function checkProjection(projection: Document): void {
  for (const v of Object.values(projection)) {
    if (!isPlainObject(v)) continue;
    if ('$elemMatch' in v) checkFilter(v.$elemMatch);
    else if (!('$slice' in v)) checkExpression(v);
  }
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

export function runPipeline(
  docs: Document[],
  pipeline: Document[],
  options: {
    collectionResolver?: (name: string) => Document[];
    variables?: Document;
    collation?: Collation | undefined;
  } = {},
): Document[] {
  return wrap('PlanExecutor error during aggregation', () => {
    // mingo computes with JS numbers: stage arguments and variables too.
    const agg = new BaseAggregator(toPlainNumbers(pipeline), {
      context: AGGREGATION_CONTEXT,
      ...(options.collectionResolver ? { collectionResolver: options.collectionResolver } : {}),
      ...(options.variables ? { variables: toPlainNumbers(options.variables) } : {}),
      // mingo applies a collation to $sort; its spec type covers the fields Intl understands.
      ...(options.collation ? { collation: options.collation.spec as unknown as CollationSpec } : {}),
    });
    return agg.run(docs) as Document[];
  });
}

/** Applies update operators in place; returns nothing useful — callers diff documents themselves. */
export function applyOperators(
  doc: Document,
  modifier: Document,
  arrayFilters: Document[] | undefined,
  filter: Document | undefined,
): void {
  wrap('update failed', () =>
    mingoUpdate(doc, modifier, arrayFilters ?? [], filter ?? {}, { cloneMode: 'deep' }),
  );
}

/** Evaluates the expressions of a `let` document into plain variable values. */
export function evaluateLet(letDoc: Document | undefined): Document | undefined {
  if (!letDoc || Object.keys(letDoc).length === 0) return undefined;
  checkExpression(letDoc);
  const projection: Document = { _id: 0 };
  for (const [k, v] of Object.entries(letDoc))
    projection[k] = isPlainObject(v) || typeof v === 'string' ? v : { $literal: v };
  const [out] = runPipeline([{ _id: 0 }], [{ $project: projection }]);
  return { ...letDoc, ...(out ?? {}) };
}
