/**
 * Running a filter + sort + skip + limit against a collection through the planner, stopping as
 * soon as the limit is reached when the plan delivers documents in order.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { compareBySort, parseSortSpec, type SortSpec } from './bsonOrder.js';
import type { Collation } from './collation.js';
import type { Collection } from './collection.js';
import { compileFilter } from './mql.js';
import { planQuery, type Plan } from './planner.js';

export interface QueryOptions {
  filter?: Document;
  sort?: unknown;
  skip?: number;
  /** 0 or undefined: no limit. */
  limit?: number;
  hint?: unknown;
  variables?: Document;
  collation?: Collation | undefined;
}

export interface QueryResult {
  docs: Document[];
  plan: Plan;
}

export function toSortSpec(sort: unknown): SortSpec {
  try {
    return parseSortSpec(sort);
  } catch (err) {
    throw new CommandError('BadValue', err instanceof Error ? err.message : String(err));
  }
}

export function runQuery(coll: Collection | undefined, opts: QueryOptions): QueryResult {
  const filter = opts.filter ?? {};
  const plain =
    coll !== undefined &&
    opts.sort === undefined &&
    opts.hint === undefined &&
    opts.collation === undefined &&
    !opts.skip;
  if (plain) {
    const direct = idEqualityLookup(coll, filter);
    if (direct) return direct;
  }
  const sort = toSortSpec(opts.sort);
  const matcher = compileFilter(filter, opts.variables, opts.collation);
  const skip = opts.skip ?? 0;
  const limit = opts.limit ?? 0;
  if (skip < 0) throw new CommandError('BadValue', 'skip value must be non-negative');
  if (!coll) {
    return {
      docs: [],
      plan: { stage: 'EOF', sorted: true, candidates: [], stats: { keysExamined: 0, docsExamined: 0 } },
    };
  }
  if (plain) {
    const byId = idPointLookup(coll, filter, matcher);
    if (byId) return byId;
  }
  const plan = planQuery(coll, filter, sort, opts.hint, opts.collation !== undefined);
  const out: Document[] = [];
  if (plan.each && (!plan.sorted || (limit === 0 && skip === 0))) {
    // Every candidate is needed: walk them by callback (without re-checking when the bounds are exact).
    if (plan.exact) plan.each((doc) => out.push(doc));
    else
      plan.each((doc) => {
        if (matcher.test(doc)) out.push(doc);
      });
    if (!plan.sorted && sort.length > 0) out.sort(compareBySort(sort, opts.collation?.compare));
    const end = limit > 0 ? skip + limit : out.length;
    return { docs: out.slice(skip, end), plan };
  }
  if (plan.sorted) {
    const want = limit > 0 ? skip + limit : Infinity;
    for (const doc of plan.candidates) {
      if (!plan.exact && !matcher.test(doc)) continue;
      out.push(doc);
      if (out.length >= want) break;
    }
    return { docs: out.slice(skip), plan };
  }
  for (const doc of plan.candidates) if (matcher.test(doc)) out.push(doc);
  if (sort.length > 0) out.sort(compareBySort(sort, opts.collation?.compare));
  const end = limit > 0 ? skip + limit : out.length;
  return { docs: out.slice(skip, end), plan };
}

/**
 * A filter whose top level holds `_id: v` (v a string, a number or an ObjectId) beside other conditions,
 * as a guarded write's `{_id, state, 'lease.token'}`: the planner's IDHACK plan for that one point (it
 * picks IDHACK whenever _id has points), without extracting every field's predicates or walking a
 * generator. The one candidate is checked against the whole compiled filter, as the planner's caller does.
 */
function idPointLookup(
  coll: Collection,
  filter: Document,
  matcher: { test(doc: Document): boolean },
): QueryResult | undefined {
  if (!Object.prototype.hasOwnProperty.call(filter, '_id')) return undefined;
  const id = filter._id as unknown;
  if (!simpleId(id)) return undefined;
  const doc = coll.get(id);
  return idHack(doc && matcher.test(doc) ? [doc] : [], doc ? 1 : 0);
}

/** The IDHACK plan's result: at most one document, one key examined. */
function idHack(docs: Document[], docsExamined: number): QueryResult {
  return {
    docs,
    plan: {
      stage: 'IDHACK',
      indexName: '_id_',
      sorted: true,
      candidates: docs,
      stats: { keysExamined: 1, docsExamined },
    },
  };
}

/** An _id whose canonical key is a point lookup equal to query equality: a string, a number, an ObjectId. */
function simpleId(id: unknown): boolean {
  return (
    typeof id === 'string' ||
    typeof id === 'number' ||
    (id !== null && typeof id === 'object' && (id as { _bsontype?: unknown })._bsontype === 'ObjectId')
  );
}

/**
 * A filter that is exactly `{_id: v}`, v a string, a number or an ObjectId, names at most one document,
 * found by its canonical _id key: the planner's IDHACK plan for one point, without compiling the
 * filter or extracting predicates (a single-document update or delete by _id spends most of its time
 * there otherwise). Equal canonical keys are equal values for these types, so the match needs no
 * re-check. Anything else (another type, more fields, an operator) goes through the planner.
 */
function idEqualityLookup(coll: Collection, filter: Document): QueryResult | undefined {
  let id: unknown;
  let fields = 0;
  for (const k in filter) {
    if (k !== '_id' || ++fields > 1) return undefined;
    id = filter[k];
  }
  if (fields !== 1) return undefined;
  if (!simpleId(id)) return undefined;
  const doc = coll.get(id);
  const docs = doc ? [doc] : [];
  return idHack(docs, docs.length);
}
