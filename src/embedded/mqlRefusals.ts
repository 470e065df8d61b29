/**
 * What the query and aggregation languages refuse before anything runs, with MongoDB 7.0's codes:
 * names MongoDB does not know get the error MongoDB gives for them; names MongoDB knows that this
 * server does not implement (or that its aggregation engine, mingo, would compute differently) get
 * NotImplemented; server-side JavaScript is refused as a server with scripting disabled refuses it.
 * So nothing mingo happens to accept beyond MongoDB leaks through, and nothing is silently wrong.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import { notImplemented } from './commandContext.js';

/** Expression operators of MongoDB 7.0 that this server evaluates. */
const EXPRESSIONS = new Set(
  (
    'abs add ceil divide exp floor ln log log10 mod multiply pow round sqrt subtract trunc ' +
    'arrayElemAt arrayToObject concatArrays filter first firstN in indexOfArray isArray last lastN map ' +
    'maxN minN objectToArray range reduce reverseArray size slice sortArray zip ' +
    'bitAnd bitNot bitOr bitXor and not or cmp eq gt gte lt lte ne cond ifNull switch ' +
    'dateAdd dateDiff dateFromParts dateFromString dateSubtract dateToParts dateToString dateTrunc ' +
    'dayOfMonth dayOfWeek dayOfYear hour isoDayOfWeek isoWeek isoWeekYear millisecond minute month ' +
    'second week year literal getField rand sampleRate mergeObjects setField unsetField ' +
    'allElementsTrue anyElementTrue setDifference setEquals setIntersection setIsSubset setUnion ' +
    'concat indexOfBytes ltrim regexFind regexFindAll regexMatch replaceOne replaceAll rtrim split ' +
    'strLenBytes strLenCP strcasecmp substr substrBytes substrCP toLower toUpper trim ' +
    'sin cos tan asin acos atan atan2 asinh acosh atanh sinh cosh tanh degreesToRadians radiansToDegrees ' +
    'convert isNumber toBool toDate toDouble toInt toString type let ' +
    'avg max min sum stdDevPop stdDevSamp median percentile'
  )
    .split(' ')
    .map((n) => `$${n}`),
);

/** Expression operators of MongoDB 7.0 this server does not implement, and why. */
const EXPRESSIONS_NOT_IMPLEMENTED = new Map<string, string>(
  Object.entries({
    $indexOfCP: 'use $indexOfBytes on ASCII text',
    $binarySize: 'BSON sizes are not computed by its aggregation engine',
    $bsonSize: 'BSON sizes are not computed by its aggregation engine',
    $meta: 'there is no text search and no record ids',
    $tsIncrement: 'timestamps are not decomposed by its aggregation engine',
    $tsSecond: 'timestamps are not decomposed by its aggregation engine',
    $toObjectId: 'its aggregation engine does not build ObjectIds',
    $toHashedIndexKey: 'there are no hashed indexes',
    $toLong: 'its aggregation engine computes with JavaScript numbers and cannot produce a 64-bit integer',
    $toDecimal: 'its aggregation engine computes with JavaScript numbers and cannot produce a decimal',
  }),
);

/** Server-side JavaScript: refused as by a MongoDB server started with scripting disabled. */
const JAVASCRIPT = new Set(['$function', '$accumulator']);

const ACCUMULATORS = new Set(
  (
    'addToSet avg bottom bottomN count first firstN last lastN max maxN median mergeObjects min minN ' +
    'percentile push stdDevPop stdDevSamp sum top topN'
  )
    .split(' ')
    .map((n) => `$${n}`),
);

const WINDOW_ONLY = new Set(
  (
    'covariancePop covarianceSamp denseRank derivative documentNumber expMovingAvg integral ' +
    'linearFill locf rank shift'
  )
    .split(' ')
    .map((n) => `$${n}`),
);

/** Pipeline stages of MongoDB 7.0 this server does not implement. */
const STAGES_NOT_IMPLEMENTED = new Map<string, string>(
  Object.entries({
    $geoNear: 'there are no geospatial indexes',
    $collStats: 'it keeps no storage statistics',
    $indexStats: 'it keeps no index usage statistics',
    $currentOp: 'commands run one at a time and are not listed',
    $listSessions: 'use $listLocalSessions',
    $planCacheStats: 'it has no plan cache',
    $search: 'Atlas Search is not available',
    $searchMeta: 'Atlas Search is not available',
    $vectorSearch: 'Atlas Vector Search is not available',
    $listSearchIndexes: 'Atlas Search is not available',
    $changeStreamSplitLargeEvent: 'change events are not split',
    $shardedDataDistribution: 'it is not sharded',
    $listSampledQueries: 'it samples no queries',
    $listCatalog: 'use listCollections and listIndexes',
  }),
);

/** MongoDB 7.0's user-facing stages that the server runs. */
export const STAGES = new Set([
  '$match',
  '$group',
  '$sort',
  '$project',
  '$addFields',
  '$set',
  '$unset',
  '$unwind',
  '$facet',
  '$count',
  '$lookup',
  '$bucket',
  '$bucketAuto',
  '$limit',
  '$skip',
  '$replaceRoot',
  '$replaceWith',
  '$sortByCount',
  '$sample',
  '$graphLookup',
  '$unionWith',
  '$redact',
  '$setWindowFields',
  '$densify',
  '$fill',
  '$documents',
  '$out',
  '$merge',
  '$listLocalSessions',
  '$changeStream',
]);

/** Refuses a stage name that MongoDB does not know (40324) or this server does not run (238). */
export function checkStageName(name: string): void {
  if (STAGES.has(name)) return;
  const why = STAGES_NOT_IMPLEMENTED.get(name);
  if (why !== undefined) throw notImplemented(`The ${name} stage`, why);
  throw new CommandError('Location40324', `Unrecognized pipeline stage name: '${name}'`);
}

/** Checks every stage of a pipeline and the expressions, accumulators and filters inside it. */
export function checkPipeline(pipeline: readonly unknown[]): void {
  for (const stage of pipeline) {
    if (!isPlainObject(stage)) continue;
    for (const [name, spec] of Object.entries(stage)) {
      checkStageName(name);
      checkStage(name, spec);
    }
  }
}

function checkStage(name: string, spec: unknown): void {
  switch (name) {
    case '$match':
      checkFilter(spec, true);
      return;
    case '$project':
    case '$addFields':
    case '$set':
    case '$replaceRoot':
    case '$replaceWith':
    case '$redact':
    case '$sortByCount':
    case '$documents':
      checkExpression(spec);
      return;
    case '$sort':
      if (isPlainObject(spec)) for (const v of Object.values(spec)) if (isPlainObject(v)) checkExpression(v);
      return;
    case '$group':
      if (!isPlainObject(spec)) return;
      for (const [field, v] of Object.entries(spec)) {
        if (field === '_id') checkExpression(v);
        else checkAccumulator(v, 'group');
      }
      return;
    case '$bucket':
    case '$bucketAuto':
      if (!isPlainObject(spec)) return;
      checkExpression(spec.groupBy);
      if (isPlainObject(spec.output))
        for (const v of Object.values(spec.output)) checkAccumulator(v, 'group');
      return;
    case '$setWindowFields':
      if (!isPlainObject(spec)) return;
      checkExpression(spec.partitionBy);
      if (isPlainObject(spec.output))
        for (const v of Object.values(spec.output)) checkAccumulator(v, 'window');
      return;
    case '$fill':
      if (!isPlainObject(spec)) return;
      checkExpression(spec.partitionBy);
      if (isPlainObject(spec.output))
        for (const v of Object.values(spec.output)) if (isPlainObject(v)) checkExpression(v.value);
      return;
    case '$facet':
      if (isPlainObject(spec))
        for (const sub of Object.values(spec)) if (Array.isArray(sub)) checkPipeline(sub);
      return;
    case '$lookup':
    case '$unionWith':
      if (!isPlainObject(spec)) return;
      if (Array.isArray(spec.pipeline)) checkPipeline(spec.pipeline);
      if (isPlainObject(spec.let)) checkExpression(spec.let);
      return;
    case '$graphLookup':
      if (!isPlainObject(spec)) return;
      checkExpression(spec.startWith);
      checkFilter(spec.restrictSearchWithMatch, true);
      return;
    default:
  }
}

function checkAccumulator(v: unknown, where: 'group' | 'window'): void {
  if (!isPlainObject(v)) return;
  for (const [op, arg] of Object.entries(v)) {
    if (where === 'window' && (op === 'window' || op === 'unit')) continue;
    if (JAVASCRIPT.has(op)) throw javascript(op);
    const known = ACCUMULATORS.has(op) || (where === 'window' && WINDOW_ONLY.has(op));
    if (!known) {
      if (where === 'group') throw new CommandError('Location15952', `unknown group operator '${op}'`);
      throw new CommandError('FailedToParse', `Unrecognized window function, ${op}`);
    }
    checkExpression(arg);
  }
}

function javascript(op: string): CommandError {
  return new CommandError(
    'Location31264',
    `Cannot run server-side javascript without the javascript engine enabled (${op}): the jobd embedded server has none`,
  );
}

/** Refuses expression operators MongoDB does not know (168) or this server does not evaluate. */
export function checkExpression(v: unknown): void {
  if (Array.isArray(v)) {
    for (const x of v) checkExpression(x);
    return;
  }
  if (!isPlainObject(v)) return;
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith('$')) {
      if (JAVASCRIPT.has(k)) throw javascript(k);
      const why = EXPRESSIONS_NOT_IMPLEMENTED.get(k);
      if (why !== undefined) throw notImplemented(`The ${k} expression`, why);
      if (!EXPRESSIONS.has(k))
        throw new CommandError('InvalidPipelineOperator', `Unrecognized expression '${k}'`);
      if (k === '$literal') continue;
      if (k === '$convert' && isPlainObject(x)) checkConvertTarget(x.to);
    }
    checkExpression(x);
  }
}

function checkConvertTarget(to: unknown): void {
  if (to === 'long' || to === 18 || to === 'decimal' || to === 19)
    throw notImplemented(
      `$convert to '${String(to)}'`,
      'its aggregation engine computes with JavaScript numbers',
    );
}

/** Query operators MongoDB 7.0 has that need an index or an engine this server does not have. */
const QUERY_REFUSALS = new Map<string, () => CommandError>(
  Object.entries({
    $text: () => new CommandError('IndexNotFound', 'text index required for $text query'),
    $near: () => noGeoIndex(),
    $nearSphere: () => noGeoIndex(),
    $geoNear: () => noGeoIndex(),
    $geoWithin: () => notImplemented('The $geoWithin query operator', 'there is no geometry support'),
    $geoIntersects: () => notImplemented('The $geoIntersects query operator', 'there is no geometry support'),
    $within: () => notImplemented('The $within query operator', 'there is no geometry support'),
    $jsonSchema: () => notImplemented('The $jsonSchema query operator', 'use query operators in a validator'),
  }),
);

function noGeoIndex(): CommandError {
  return new CommandError(
    'NoQueryExecutionPlans',
    'error processing query: planner returned error :: caused by :: unable to find index for $geoNear query',
  );
}

/**
 * Checks a query filter: operators needing what the server lacks are refused with MongoDB's codes,
 * `$where` as by a server without JavaScript, and `$expr` bodies as aggregation expressions.
 * Unknown operators are left to the filter compiler, which answers BadValue as MongoDB does.
 */
export function checkFilter(v: unknown, inPipeline = false): void {
  if (Array.isArray(v)) {
    for (const x of v) checkFilter(x, inPipeline);
    return;
  }
  if (!isPlainObject(v)) return;
  // Runs on every command's filter: a plain loop, and lookups only for operator names.
  for (const k in v) {
    const x = v[k] as unknown;
    if (k.charCodeAt(0) === 36 /* $ */) {
      if (k === '$where') {
        if (inPipeline)
          throw new CommandError(
            'BadValue',
            '$where is not allowed inside of a $match aggregation expression',
          );
        throw new CommandError(
          'Location6108304',
          'no globalScriptEngine in $where parsing: the jobd embedded server runs no server-side JavaScript',
        );
      }
      const refusal = QUERY_REFUSALS.get(k);
      if (refusal) throw refusal();
      if (k === '$expr') {
        checkExpression(x);
        continue;
      }
    }
    if (typeof x === 'object' && x !== null) checkFilter(x, inPipeline);
  }
}

/**
 * With a non-simple collation, the first stage (after the planned prefix) whose string comparisons
 * the aggregation engine would make without the collation; undefined when every stage honours it.
 */
export function stageIgnoringCollation(stages: readonly Document[]): string | undefined {
  for (const stage of stages) {
    const name = Object.keys(stage)[0] as string;
    if (SAFE_UNDER_COLLATION.has(name)) continue;
    if (EXPRESSION_STAGES.has(name) && !comparesValues(stage[name])) continue;
    if (name === '$group' && groupComparesNothing(stage[name])) continue;
    return name;
  }
  return undefined;
}

/** Stages that compare no strings, or ($sort) apply the collation themselves. */
const SAFE_UNDER_COLLATION = new Set([
  '$sort',
  '$skip',
  '$limit',
  '$sample',
  '$unwind',
  '$count',
  '$unset',
  '$out',
]);
const EXPRESSION_STAGES = new Set([
  '$project',
  '$addFields',
  '$set',
  '$replaceRoot',
  '$replaceWith',
  '$documents',
]);
const COMPARING = new Set(
  (
    'eq ne gt gte lt lte cmp in indexOfArray setEquals setIntersection setUnion setDifference setIsSubset ' +
    'max min maxN minN sortArray'
  )
    .split(' ')
    .map((n) => `$${n}`),
);

/** Accumulators that never compare the values they gather. */
const NON_COMPARING_ACCUMULATORS = new Set(
  'sum avg count push first last firstN lastN stdDevPop stdDevSamp mergeObjects'
    .split(' ')
    .map((n) => `$${n}`),
);

/**
 * A $group by a constant (as countDocuments sends) whose accumulators compare nothing: no string is
 * compared, so the collation cannot change its result.
 */
function groupComparesNothing(spec: unknown): boolean {
  if (!isPlainObject(spec)) return false;
  for (const [field, v] of Object.entries(spec)) {
    if (field === '_id') {
      if (referencesFields(v)) return false;
      continue;
    }
    if (!isPlainObject(v)) return false;
    for (const [op, arg] of Object.entries(v))
      if (!NON_COMPARING_ACCUMULATORS.has(op) || comparesValues(arg)) return false;
  }
  return true;
}

/** True when an expression reads a field or a variable (a string starting with $), or is a string. */
function referencesFields(v: unknown): boolean {
  if (typeof v === 'string') return true;
  if (Array.isArray(v)) return v.some(referencesFields);
  if (isPlainObject(v)) return Object.entries(v).some(([k, x]) => k !== '$literal' && referencesFields(x));
  return false;
}

function comparesValues(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(comparesValues);
  if (!isPlainObject(v)) return false;
  return Object.entries(v).some(([k, x]) => COMPARING.has(k) || (k !== '$literal' && comparesValues(x)));
}
