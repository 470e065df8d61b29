/**
 * aggregate: a leading $match/$sort/$skip/$limit goes through the planner, the rest through
 * mingo; $lookup and friends resolve collections of the same database; $out and $merge write
 * through the engine; a leading $changeStream opens a change stream.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import { evaluateLet, runPipeline } from './mql.js';
import { runQuery, type QueryOptions } from './query.js';
import { openChangeStream } from './cmdChangeStream.js';
import {
  nonNegative,
  notImplemented,
  optionalDoc,
  optionalNumber,
  rejectUnknownFields,
  rejectUnknownSubfields,
  type CommandContext,
  type CommandHandler,
} from './commandContext.js';
import { openCursor } from './cursor.js';
import { isView, resolveView } from './views.js';
import { project } from './mql.js';
import type { Collection } from './collection.js';
import { mergeInto, outInto } from './cmdAggregateOutput.js';
import { parseCollation, type Collation } from './collation.js';
import { toPlainNumbers } from './numbers.js';
import { checkPipeline, checkStageName, stageIgnoringCollation } from './mqlRefusals.js';
import type { WriteOptions } from './engine.js';
import { checkInternalSize } from './limits.js';
import { runNativeGroup } from './nativeGroup.js';
import { runCoveredGroup } from './coveredGroup.js';

function validatePipeline(pipeline: unknown): asserts pipeline is Document[] {
  if (!Array.isArray(pipeline))
    throw new CommandError('TypeMismatch', "'pipeline' option must be specified as an array");
  pipeline.forEach((stage, i) => {
    if (!isPlainObject(stage) || Object.keys(stage).length !== 1) {
      throw new CommandError(
        'Location40324' as never,
        'A pipeline stage specification object must contain exactly one field.',
      );
    }
    const name = Object.keys(stage)[0] as string;
    checkStageName(name);
    if (name === '$changeStream' || name === '$listLocalSessions') {
      if (i !== 0)
        throw new CommandError('BadValue', `${name} is only valid as the first stage in a pipeline`);
    }
    if ((name === '$out' || name === '$merge') && i !== pipeline.length - 1) {
      throw new CommandError('BadValue', `${name} can only be the final stage in the pipeline`);
    }
  });
  // A change stream's own stages are checked where the stream is opened.
  if (!(pipeline[0] && '$changeStream' in (pipeline[0] as Document))) checkPipeline(pipeline);
}

/** Moves a leading $match, $sort, $skip and $limit into a planned query. */
function pushDown(pipeline: Document[]): { query: QueryOptions; rest: Document[] } {
  const query: QueryOptions = {};
  let i = 0;
  const first = pipeline[0];
  if (first && '$match' in first && isPlainObject(first.$match) && !('$expr' in first.$match)) {
    query.filter = first.$match;
    i++;
  }
  const sortStage = pipeline[i];
  if (sortStage && '$sort' in sortStage) {
    query.sort = sortStage.$sort;
    i++;
  }
  // $skip then $limit maps directly; $limit then $skip would need rewriting, so stop there.
  const skipStage = pipeline[i];
  if (skipStage && '$skip' in skipStage && typeof skipStage.$skip === 'number') {
    query.skip = skipStage.$skip;
    i++;
  }
  const limitStage = pipeline[i];
  if (
    limitStage &&
    '$limit' in limitStage &&
    typeof limitStage.$limit === 'number' &&
    limitStage.$limit > 0
  ) {
    query.limit = limitStage.$limit;
    i++;
  }
  return { query, rest: pipeline.slice(i) };
}

/** find, count and distinct on a view: its pipeline, then the query as stages. */
export function readView(
  ctx: CommandContext,
  view: Collection,
  q: QueryOptions & { projection?: Document | undefined },
): Document[] {
  const stages: Document[] = [];
  if (q.filter && Object.keys(q.filter).length > 0) stages.push({ $match: q.filter });
  if (q.sort && Object.keys(q.sort as Document).length > 0) stages.push({ $sort: q.sort });
  if (q.skip) stages.push({ $skip: q.skip });
  if (q.limit) stages.push({ $limit: q.limit });
  const docs = runAggregation(ctx, view.name, stages, q.variables, q.collation, { hint: q.hint });
  return q.projection ? project(docs, q.projection) : docs;
}

/** What an aggregate passes down besides its pipeline: its hint, and bypassDocumentValidation for $out/$merge. */
export interface AggregationExtras {
  hint?: unknown;
  writes?: WriteOptions;
}

export function runAggregation(
  ctx: CommandContext,
  collName: string | null,
  pipeline: Document[],
  variables?: Document,
  collation?: Collation,
  extras: AggregationExtras = {},
): Document[] {
  if (collName !== null) {
    const target = ctx.engine.getCollection(ctx.db, collName);
    if (target && isView(target)) {
      const { source, pipeline: viewPipeline } = resolveView(ctx.engine, target);
      return runAggregation(ctx, source, [...viewPipeline, ...pipeline], variables, collation, extras);
    }
  }
  const resolver = (name: string): Document[] =>
    toPlainNumbers([...(ctx.engine.getCollection(ctx.db, name)?.docs.values() ?? [])]);
  const last = pipeline[pipeline.length - 1];
  const writes = last && ('$out' in last || '$merge' in last) ? last : undefined;
  const body = writes ? pipeline.slice(0, -1) : pipeline;
  let docs: Document[];
  let rest: Document[];
  let grouped: { docs: Document[]; consumed: number } | undefined;
  if (collName === null) {
    docs = [];
    rest = body;
    const first = body[0];
    if (first && '$listLocalSessions' in first) {
      if (!isPlainObject(first.$listLocalSessions))
        throw new CommandError('TypeMismatch', '$listLocalSessions must be an object');
      docs = ctx.engine.sessions.list();
      rest = body.slice(1);
    } else if (!first || !('$documents' in first)) {
      throw new CommandError(
        'InvalidNamespace',
        "{aggregate: 1} is not valid for '$match'; a collection is required.",
      );
    }
  } else {
    if (body[0] && '$listLocalSessions' in body[0]) {
      throw new CommandError(
        'InvalidNamespace',
        '$listLocalSessions must be run against a database with {aggregate: 1}, not against a collection',
      );
    }
    const pushed = pushDown(body);
    const coll = ctx.engine.getCollection(ctx.db, collName);
    const { filter, ...ordering } = pushed.query;
    // A $match alone before the $group may be answered from the index (a covered read).
    const covered =
      coll && filter && !collation && Object.keys(ordering).length === 0
        ? runCoveredGroup(coll, filter, pushed.rest, variables, extras.hint)
        : undefined;
    if (covered) {
      docs = [];
      grouped = covered;
    } else {
      docs = runQuery(coll, {
        ...pushed.query,
        ...(variables ? { variables } : {}),
        collation,
        hint: extras.hint,
      }).docs;
    }
    rest = pushed.rest;
  }
  if (collation && rest.length > 0) {
    const stage = stageIgnoringCollation(rest);
    if (stage)
      throw notImplemented(
        `A collation with the ${stage} stage`,
        'its aggregation engine applies a collation only to $sort and to a leading $match, $sort, $skip and $limit',
      );
  }
  // A leading [$project] $group in the native language runs straight over the documents.
  let out = docs;
  let stages = rest;
  if (rest.length > 0 && !collation) {
    const native = grouped ?? runNativeGroup(docs, rest);
    if (native) {
      out = native.docs;
      stages = rest.slice(native.consumed);
    }
  }
  // mingo runs on plain-number copies: the stages after the planned prefix see values, not BSON types.
  if (stages.length > 0) {
    out = runPipeline(toPlainNumbers(out), expandCount(stages), {
      collectionResolver: resolver,
      ...(variables ? { variables } : {}),
      collation,
    });
  }
  // Stored documents are within the limit; documents the stages built are measured, as MongoDB does.
  if (rest.length > 0) for (const doc of out) checkInternalSize(doc, 'PlanExecutor error during aggregation');
  if (writes) {
    if ('$out' in writes) outInto(ctx, writes.$out, out, extras.writes);
    else mergeInto(ctx, writes.$merge, out, extras.writes);
    out = [];
  }
  return out;
}

/** $count as its documented equivalent, so an empty input yields no document. */
function expandCount(pipeline: Document[]): Document[] {
  return pipeline.flatMap((stage) => {
    if (!('$count' in stage)) return [stage];
    const field = stage.$count as unknown;
    if (typeof field !== 'string' || field.length === 0 || field.startsWith('$') || field.includes('.')) {
      throw new CommandError(
        'BadValue',
        'the count field must be a non-empty string that does not start with $ and has no dots',
      );
    }
    return [{ $group: { _id: null, [field]: { $sum: 1 } } }, { $project: { _id: 0 } }];
  });
}

/** Internal fields of MongoDB's aggregate (sharding, resharding, mapReduce, encryption). */
const AGGREGATE_INTERNAL = [
  'needsMerge',
  'fromMongos',
  'fromRouter',
  'exchange',
  'runtimeConstants',
  'isMapReduceCommand',
  'collectionUUID',
  'encryptionInformation',
  '$_requestReshardingResumeToken',
  '$_passthroughToShard',
  '$_generateV2ResumeTokens',
  'isClusterQueryWithoutShardKeyCmd',
];

const aggregate: CommandHandler = (cmd, ctx) => {
  rejectUnknownFields(cmd, 'aggregate', [
    'pipeline',
    'cursor',
    'explain',
    'hint',
    'allowDiskUse',
    'bypassDocumentValidation',
    'collation',
    'let',
    ...AGGREGATE_INTERNAL,
  ]);
  for (const f of AGGREGATE_INTERNAL)
    if (cmd[f] !== undefined) throw notImplemented(`aggregate.${f}`, 'it is internal to sharded clusters');
  const target = cmd.aggregate as unknown;
  let collName: string | null;
  if (target === 1) collName = null;
  else if (typeof target === 'string' && target.length > 0) collName = target;
  else throw new CommandError('InvalidNamespace', `Invalid aggregate namespace`);
  validatePipeline(cmd.pipeline);
  const pipeline = cmd.pipeline;
  const cursorOpts = optionalDoc(cmd, 'cursor');
  if (cursorOpts) rejectUnknownSubfields(cursorOpts, 'aggregate.cursor', ['batchSize']);
  if (!cursorOpts && !cmd.explain)
    throw new CommandError(
      'FailedToParse',
      "The 'cursor' option is required, except for aggregate with the explain argument",
    );
  const batchSize = nonNegative(
    cursorOpts ? optionalNumber(cursorOpts, 'batchSize') : undefined,
    'batchSize',
  );
  const first = pipeline[0];
  if (first && '$changeStream' in first)
    return openChangeStream(ctx, collName, first.$changeStream, pipeline.slice(1), batchSize);
  if (cmd.explain) {
    return {
      explainVersion: '1',
      stages: pipeline.map((s) => ({ ...s })),
      queryPlanner: { namespace: `${ctx.db}.${String(collName)}` },
      ok: 1,
    };
  }
  const last = pipeline[pipeline.length - 1];
  if (
    last &&
    ('$out' in last || '$merge' in last) &&
    (cmd.readConcern as Document | undefined)?.level === 'linearizable'
  ) {
    throw new CommandError(
      'InvalidOptions',
      `${Object.keys(last)[0] as string} cannot be used with a 'linearizable' read concern level`,
    );
  }
  const variables = evaluateLet(optionalDoc(cmd, 'let'));
  const docs = runAggregation(ctx, collName, pipeline, variables, parseCollation(cmd.collation), {
    hint: cmd.hint,
    writes: { bypassValidation: cmd.bypassDocumentValidation === true },
  });
  const ns = collName === null ? `${ctx.db}.$cmd.aggregate` : `${ctx.db}.${collName}`;
  return openCursor(ctx, ns, docs, batchSize);
};

export const aggregateCommands: Record<string, CommandHandler> = { aggregate };
