/**
 * Chooses how to find the candidates of a filter: direct _id lookups, an ordered walk of an index
 * (merging the ranges of $in points so the walk still yields documents in sort order), or a scan.
 * Candidates are always re-checked against the full filter by the caller, so bounds only need to
 * cover every matching document; what they buy is stopping early once a limit is reached.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import {
  canonicalKey,
  compareValues,
  isPlainObject,
  typeRank,
  Rank,
  TypeBound,
  type SortSpec,
} from './bsonOrder.js';
import type { Span } from './btreeScan.js';
import type { Collection } from './collection.js';
import { KEY_MAX, KEY_MIN, type Index, type IndexKey } from './indexes.js';

interface FieldPredicate {
  points?: unknown[];
  lower?: { v: unknown; incl: boolean };
  upper?: { v: unknown; incl: boolean };
}

export interface Plan {
  /** 'IDHACK' | 'IXSCAN' | 'COLLSCAN' */
  stage: string;
  indexName?: string;
  /** True when candidates arrive already in the requested sort order. */
  sorted: boolean;
  candidates: Iterable<Document>;
  /** The same candidates, in the same order, by callback: a whole walk without generator steps. */
  each?(fn: (doc: Document) => void): void;
  /**
   * True when the index bounds alone select exactly the documents the filter matches (see
   * boundsImplyFilter): the caller may skip re-checking each candidate.
   */
  exact?: boolean;
  /** The index walked (IXSCAN). */
  index?: Index;
  /**
   * The index entries of the same candidates, in the same order, without fetching documents: runs of
   * keys as the tree holds them with their canonical _id keys, [from, to) of each (a covered read).
   * Not for a multikey index.
   */
  eachSpan?(fn: Span<unknown, string>): void;
  stats: { keysExamined: number; docsExamined: number };
}

const MAX_POINT_RANGES = 4096;

function indexable(v: unknown): boolean {
  if (v === undefined || Array.isArray(v) || v instanceof RegExp) return false;
  const r = typeRank(v);
  if (r === Rank.Regex || r === Rank.MinKey || r === Rank.MaxKey || r === Rank.Array) return false;
  if (isPlainObject(v) && Object.keys(v).some((k) => k.startsWith('$'))) return false;
  return true;
}

/** Values whose comparison a collation changes: strings, and documents or arrays holding them. */
function collationSensitive(v: unknown): boolean {
  const r = typeRank(v);
  if (r === Rank.String) return true;
  if (Array.isArray(v)) return v.some(collationSensitive);
  if (isPlainObject(v)) return Object.values(v).some(collationSensitive);
  return false;
}

/**
 * Per-field predicates an index can bound, from the top level of the filter and its $and.
 * Under a collation, indexes (which hold binary-ordered keys) cannot bound string comparisons.
 */
export function extractPredicates(
  filter: Document,
  out = new Map<string, FieldPredicate>(),
  collated = false,
): Map<string, FieldPredicate> {
  const usable = collated ? (v: unknown) => indexable(v) && !collationSensitive(v) : indexable;
  for (const [field, cond] of Object.entries(filter)) {
    if (field === '$and' && Array.isArray(cond)) {
      for (const sub of cond) if (isPlainObject(sub)) extractPredicates(sub, out, collated);
      continue;
    }
    if (field.startsWith('$')) continue;
    const pred = out.get(field) ?? {};
    if (isPlainObject(cond) && Object.keys(cond).some((k) => k.startsWith('$'))) {
      for (const [op, arg] of Object.entries(cond)) {
        if (op === '$eq' && usable(arg)) pred.points = [arg];
        else if (op === '$in' && Array.isArray(arg) && arg.every(usable) && !pred.points) pred.points = arg;
        else if ((op === '$gt' || op === '$gte') && usable(arg) && !isPlainObject(arg))
          pred.lower = { v: arg, incl: op === '$gte' };
        else if ((op === '$lt' || op === '$lte') && usable(arg) && !isPlainObject(arg))
          pred.upper = { v: arg, incl: op === '$lte' };
      }
    } else if (usable(cond)) {
      pred.points = [cond];
    }
    if (pred.points || pred.lower || pred.upper) out.set(field, pred);
  }
  return out;
}

/**
 * A sparse index lacks documents missing all its fields; it can serve a filter only when the
 * filter cannot match such documents, i.e. its predicate on the first field excludes null.
 */
function excludesMissing(pred: FieldPredicate | undefined): boolean {
  if (!pred) return false;
  if (pred.points) return pred.points.length > 0 && pred.points.every((p) => typeRank(p) !== Rank.Null);
  const bounds = [pred.lower, pred.upper].filter((b) => b !== undefined);
  return bounds.length > 0 && bounds.every((b) => typeRank(b.v) > Rank.Null);
}

/**
 * A partial index holds only the documents its filter expression matches, so it can serve a query
 * only when the query matches nothing outside it. Recognised: an expression made of
 * {field: {$exists: true}} conditions (the usual form), each implied by a query predicate on that
 * field that excludes missing and null (an equality, an $in or a range on non-null values).
 */
function impliesPartial(expr: Document, preds: Map<string, FieldPredicate>): boolean {
  const entries = Object.entries(expr);
  if (entries.length === 0) return false;
  for (const [field, cond] of entries) {
    if (field === '$and' && Array.isArray(cond)) {
      if (!cond.every((sub) => isPlainObject(sub) && impliesPartial(sub, preds))) return false;
      continue;
    }
    if (field.startsWith('$') || !isPlainObject(cond)) return false;
    const keys = Object.keys(cond);
    const exists = cond.$exists as unknown;
    if (keys.length !== 1 || !(exists === true || (typeof exists === 'number' && exists !== 0))) return false;
    if (!excludesMissing(preds.get(field))) return false;
  }
  return true;
}

interface IndexChoice {
  index: Index;
  score: number;
  pointFields: number;
  range?: FieldPredicate;
  providesSort: boolean;
  reverse: boolean;
}

function dedupePoints(points: unknown[]): unknown[] {
  const seen = new Set<string>();
  return points.filter((p) => {
    const k = canonicalKey(p);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function evaluateIndex(
  index: Index,
  preds: Map<string, FieldPredicate>,
  sort: SortSpec,
  collated: boolean,
): IndexChoice {
  let pointFields = 0;
  let ranges = 1;
  let range: FieldPredicate | undefined;
  const constant = new Set<string>();
  for (const [path] of index.fields) {
    const p = preds.get(path);
    if (p?.points && ranges * p.points.length <= MAX_POINT_RANGES && p.points.length > 0) {
      pointFields++;
      ranges *= p.points.length;
      if (p.points.length === 1) constant.add(path);
      continue;
    }
    // On a multikey index a document's elements may meet the two bounds separately ({$gte: 5, $lt: 3}
    // matches [1, 9]): as MongoDB, only one bound can narrow the walk.
    if (p && (p.lower || p.upper)) range = index.multikey && p.lower && p.upper ? { lower: p.lower } : p;
    break;
  }
  // The order within one range: sort fields minus the fixed point prefix must follow the index.
  const keyFields = fullKeyFields(index);
  const prefix = new Set(index.fields.slice(0, pointFields).map(([f]) => f));
  const effective = sort.filter(([f]) => !constant.has(f));
  const within = effective.filter(([f]) => !prefix.has(f));
  let providesSort = effective.length === 0;
  let reverse = false;
  // Index order is binary: under a collation it cannot stand in for a sort that may meet strings.
  if (
    !providesSort &&
    !collated &&
    !index.multikey &&
    effective.every(([f]) => keyFields.some(([g]) => g === f))
  ) {
    const suffix = keyFields.slice(pointFields);
    let flip = 0;
    let ok = within.length <= suffix.length;
    within.forEach(([f, d], i) => {
      const [g, gd] = suffix[i] ?? ['', 1];
      const sign = d === gd ? 1 : -1;
      if (f !== g || (flip !== 0 && flip !== sign)) ok = false;
      flip = sign;
    });
    // Fields of the point prefix that the sort still orders by merge fine only in a uniform direction.
    for (const [f, d] of effective) {
      if (!prefix.has(f)) continue;
      const gd = keyFields.find(([g]) => g === f)?.[1] ?? 1;
      const sign = d === gd ? 1 : -1;
      if (flip === 0) flip = sign;
      else if (flip !== sign) ok = false;
    }
    providesSort = ok;
    reverse = flip === -1;
  }
  const score = pointFields * 10 + (range ? 5 : 0) + (providesSort && sort.length > 0 ? 8 : 0);
  return { index, score, pointFields, range, providesSort, reverse };
}

/**
 * The fields a walk of the index is ordered by: its own, then the _id every entry ends with (entries
 * are [values..., _id], ascending on _id), so {a: 1} also yields {a: 1, _id: 1} order.
 */
function fullKeyFields(index: Index): Array<[string, number]> {
  return index.fields.some(([f]) => f === '_id') ? index.fields : [...index.fields, ['_id', 1]];
}

function findHinted(coll: Collection, hint: unknown): Index | 'natural' {
  if (typeof hint === 'string') {
    const idx = coll.indexes.get(hint);
    if (!idx)
      throw new CommandError(
        'BadValue',
        `error processing query: planner returned error :: caused by :: hint provided does not correspond to an existing index`,
      );
    return idx;
  }
  if (isPlainObject(hint)) {
    if ('$natural' in hint) return 'natural';
    const want = canonicalKey(hint);
    for (const idx of coll.indexes.values()) if (canonicalKey(idx.spec.key) === want) return idx;
  }
  throw new CommandError(
    'BadValue',
    `error processing query: planner returned error :: caused by :: hint provided does not correspond to an existing index`,
  );
}

export function planQuery(
  coll: Collection,
  filter: Document,
  sort: SortSpec,
  hint?: unknown,
  collated = false,
): Plan {
  const stats = { keysExamined: 0, docsExamined: 0 };
  const preds = extractPredicates(filter, undefined, collated);
  const hinted =
    hint !== undefined && hint !== null && !(isPlainObject(hint) && Object.keys(hint).length === 0)
      ? findHinted(coll, hint)
      : undefined;

  const idPred = preds.get('_id');
  if (!hinted && idPred?.points) {
    const points = dedupePoints(idPred.points);
    return {
      stage: 'IDHACK',
      indexName: '_id_',
      sorted: points.length <= 1,
      stats,
      candidates: (function* () {
        for (const p of points) {
          stats.keysExamined++;
          const doc = coll.get(p);
          if (doc) {
            stats.docsExamined++;
            yield doc;
          }
        }
      })(),
    };
  }

  let best: IndexChoice | undefined;
  if (hinted && hinted !== 'natural') best = evaluateIndex(hinted, preds, sort, collated);
  else if (!hinted) {
    for (const index of coll.indexes.values()) {
      if (index.spec.hidden) continue;
      if (index.spec.partialFilterExpression && !impliesPartial(index.spec.partialFilterExpression, preds))
        continue;
      if (index.spec.sparse && !excludesMissing(preds.get(index.fields[0]?.[0] ?? ''))) continue;
      const choice = evaluateIndex(index, preds, sort, collated);
      if (choice.score > 0 && (!best || choice.score > best.score)) best = choice;
    }
  }
  if (!best) {
    return {
      stage: 'COLLSCAN',
      sorted: sort.length === 0,
      stats,
      candidates: (function* () {
        for (const doc of coll.docs.values()) {
          stats.docsExamined++;
          yield doc;
        }
      })(),
      each: (fn) => {
        for (const doc of coll.docs.values()) {
          stats.docsExamined++;
          fn(doc);
        }
      },
    };
  }
  const plan = indexPlan(coll, best, preds, sort, stats);
  if (!collated && boundsImplyFilter(filter, best)) plan.exact = true;
  return plan;
}

/** Values whose index order and query equality agree with no type bracketing subtleties. */
function exactPoint(v: unknown): boolean {
  if (typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return !Number.isNaN(v);
  return v instanceof Date && !Number.isNaN(v.getTime());
}

/**
 * Whether a walk of the chosen index's bounds yields exactly the filter's matches, so re-checking each
 * candidate cannot reject one. Deliberately narrow: the index is not multikey (every key holds the
 * field's one value); the filter names only top-level fields, each of them a key field the bounds
 * cover whole: the point prefix by equality or $in of strings, booleans, numbers or dates (none null,
 * none NaN), then at most the next field by a range whose bounds are dates. MongoDB's comparison
 * operators match only values of the bound's type (type bracketing), as the range's type bounds do.
 */
function boundsImplyFilter(filter: Document, choice: IndexChoice): boolean {
  const { index, pointFields, range } = choice;
  if (index.multikey) return false;
  const entries = Object.entries(filter);
  const rangeField = range ? index.fields[pointFields]?.[0] : undefined;
  if (entries.length !== pointFields + (rangeField !== undefined ? 1 : 0)) return false;
  for (const [field, cond] of entries) {
    if (field.startsWith('$') || field.includes('.')) return false;
    const pos = index.fields.findIndex(([f]) => f === field);
    if (pos < 0) return false;
    const ops = isPlainObject(cond) ? Object.keys(cond) : [];
    const operators = ops.length > 0 && ops.every((k) => k.startsWith('$'));
    if (!operators && ops.length > 0) return false; // an embedded document: left to the matcher
    if (pos < pointFields) {
      if (!operators) {
        if (!exactPoint(cond)) return false;
      } else {
        if (ops.length !== 1) return false;
        const c = cond as Document;
        if ('$eq' in c) {
          if (!exactPoint(c.$eq)) return false;
        } else if ('$in' in c) {
          if (!Array.isArray(c.$in) || c.$in.length === 0 || !c.$in.every(exactPoint)) return false;
        } else return false;
      }
    } else if (field === rangeField) {
      if (!operators) return false;
      const c = cond as Document;
      let lower = 0;
      let upper = 0;
      for (const op of ops) {
        if (op === '$gt' || op === '$gte') lower++;
        else if (op === '$lt' || op === '$lte') upper++;
        else return false;
        const v = c[op] as unknown;
        if (!(v instanceof Date) || Number.isNaN(v.getTime())) return false;
      }
      if (lower > 1 || upper > 1) return false;
    } else return false;
  }
  return true;
}

function indexPlan(
  coll: Collection,
  choice: IndexChoice,
  preds: Map<string, FieldPredicate>,
  sort: SortSpec,
  stats: Plan['stats'],
): Plan {
  const { index, pointFields, range, reverse } = choice;
  const width = index.fields.length + 1;
  // Cartesian product of the point values of the prefix fields, in key order.
  let prefixes: unknown[][] = [[]];
  for (let i = 0; i < pointFields; i++) {
    const [path] = index.fields[i] as [string, number];
    const points = dedupePoints(preds.get(path)?.points ?? []);
    const next: unknown[][] = [];
    for (const p of prefixes) for (const v of points) next.push([...p, v]);
    prefixes = next;
  }
  const bounds = prefixes.map((prefix) => rangeBounds(index, prefix, range, width));
  const cmp = index.comparator;
  // Order the ranges themselves in key order so concatenation is already ordered when one range leads.
  bounds.sort((a, b) => cmp(a[0], b[0]));
  if (reverse) bounds.reverse();

  const multikey = index.multikey;
  const keyFields = fullKeyFields(index);
  const sortPositions = sort.map(([f, d]) => {
    const pos = keyFields.findIndex(([g]) => g === f);
    return [pos, d] as [number, number];
  });
  const needMerge = bounds.length > 1 && sort.length > 0 && choice.providesSort;
  const mergeCmp = (a: IndexKey, b: IndexKey): number => {
    for (const [pos, d] of sortPositions) {
      if (pos < 0) continue;
      const c = compareValues(a[pos], b[pos]);
      if (c !== 0) return c * d;
    }
    return 0;
  };

  function* ids(): Generator<string> {
    if (!needMerge) {
      for (const [lo, hi] of bounds) yield* index.scan(lo, hi, reverse);
      return;
    }
    const heads = bounds.map(([lo, hi]) => {
      const it = index.entriesFrom(lo, hi, reverse);
      const first = it.next();
      return { it, cur: first.done ? undefined : first.value };
    });
    for (;;) {
      let bestHead: (typeof heads)[number] | undefined;
      for (const h of heads) {
        if (!h.cur) continue;
        if (!bestHead || mergeCmp(h.cur[0], (bestHead.cur as [IndexKey, string])[0]) < 0) bestHead = h;
      }
      if (!bestHead || !bestHead.cur) return;
      yield bestHead.cur[1];
      const n = bestHead.it.next();
      bestHead.cur = n.done ? undefined : n.value;
    }
  }

  const each =
    needMerge || reverse
      ? undefined
      : (fn: (doc: Document) => void): void => {
          const seen = multikey ? new Set<string>() : undefined;
          const visit = (_key: unknown, id: string): void => {
            stats.keysExamined++;
            if (seen) {
              if (seen.has(id)) return;
              seen.add(id);
            }
            const doc = coll.docs.get(id);
            if (!doc) return;
            stats.docsExamined++;
            fn(doc);
          };
          for (const [lo, hi] of bounds) index.forRange(lo, hi, visit);
        };
  const eachSpan =
    needMerge || reverse || multikey
      ? undefined
      : (fn: Span<unknown, string>): void => {
          const span: Span<unknown, string> = (keys, ids, from, to) => {
            stats.keysExamined += to - from;
            fn(keys, ids, from, to);
          };
          for (const [lo, hi] of bounds) index.forRangeSpans(lo, hi, span);
        };
  return {
    stage: 'IXSCAN',
    indexName: index.name,
    index,
    sorted: choice.providesSort,
    stats,
    ...(each ? { each } : {}),
    ...(eachSpan ? { eachSpan } : {}),
    candidates: (function* () {
      const seen = multikey ? new Set<string>() : undefined;
      for (const id of ids()) {
        stats.keysExamined++;
        if (seen) {
          if (seen.has(id)) continue;
          seen.add(id);
        }
        const doc = coll.docs.get(id);
        if (!doc) continue;
        stats.docsExamined++;
        yield doc;
      }
    })(),
  };
}

/** Key-order bounds of one point prefix, optionally followed by a range on the next field. */
function rangeBounds(
  index: Index,
  prefix: unknown[],
  range: FieldPredicate | undefined,
  width: number,
): [IndexKey, IndexKey] {
  const lo: IndexKey = [...prefix];
  const hi: IndexKey = [...prefix];
  let loFill: symbol = KEY_MIN;
  let hiFill: symbol = KEY_MAX;
  if (range && prefix.length < index.fields.length) {
    const dir = index.fields[prefix.length]?.[1] ?? 1;
    const rank = typeRank(range.lower?.v ?? range.upper?.v);
    const vLo = range.lower ? range.lower : { v: new TypeBound(rank, false), incl: true };
    const vHi = range.upper ? range.upper : { v: new TypeBound(rank, true), incl: true };
    const [kLo, kHi] = dir > 0 ? [vLo, vHi] : [vHi, vLo];
    lo.push(kLo.v);
    hi.push(kHi.v);
    loFill = kLo.incl ? KEY_MIN : KEY_MAX;
    hiFill = kHi.incl ? KEY_MAX : KEY_MIN;
  }
  while (lo.length < width) lo.push(loFill);
  while (hi.length < width) hi.push(hiFill);
  return [lo, hi];
}
