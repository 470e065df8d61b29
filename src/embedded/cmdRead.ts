/**
 * Read commands: find, getMore, killCursors, count, distinct, explain.
 */
import { Long, type Document } from 'bson';
import { CommandError } from './errors.js';
import { canonicalKey, compareValues, isPlainObject, pathValues } from './bsonOrder.js';
import { openCursor } from './cursor.js';
import { readView } from './cmdAggregate.js';
import { isView } from './views.js';
import { evaluateLet, project } from './mql.js';
import type { Plan } from './planner.js';
import { runQuery, type QueryOptions } from './query.js';
import { SERVER_VERSION } from './cmdAdmin.js';
import { parseCollation } from './collation.js';
import {
  collectionArg,
  nonNegative,
  notImplemented,
  optionalBool,
  optionalDoc,
  optionalNumber,
  rejectUnknownFields,
  type CommandHandler,
} from './commandContext.js';

/** find's fields (MongoDB's find_command.idl), besides the generic arguments. */
const FIND_FIELDS = [
  'filter',
  'sort',
  'projection',
  'skip',
  'limit',
  'batchSize',
  'ntoreturn',
  'singleBatch',
  'hint',
  'collation',
  'let',
  'allowDiskUse',
  'noCursorTimeout',
  'allowPartialResults',
  'returnKey',
  'showRecordId',
  'tailable',
  'awaitData',
  'min',
  'max',
  'oplogReplay',
  'readOnce',
  'options',
  'term',
  'allowSpeculativeMajorityRead',
  '$_requestResumeToken',
  '$_resumeAfter',
  'runtimeConstants',
  'collectionUUID',
];

/** find's internal fields: for replication, resharding and mongos only. */
const FIND_INTERNAL = [
  'options',
  'term',
  'allowSpeculativeMajorityRead',
  '$_requestResumeToken',
  '$_resumeAfter',
  'runtimeConstants',
  'collectionUUID',
];

/**
 * Refuses the find options this server does not honour. Accepted without effect, as on any
 * unsharded replica set: oplogReplay (ignored by MongoDB too), readOnce (a cache hint),
 * allowPartialResults (sharding only) and allowDiskUse (no memory limit is enforced here).
 */
function refuseFindOptions(cmd: Document, verb: string): void {
  rejectUnknownFields(cmd, verb, FIND_FIELDS);
  if (cmd.awaitData && !cmd.tailable)
    throw new CommandError('FailedToParse', "Cannot set 'awaitData' without also setting 'tailable'");
  if (cmd.tailable)
    throw new CommandError(
      'BadValue',
      'error processing query: tailable cursor requested on non capped collection (the embedded server has no capped collections)',
    );
  for (const f of ['min', 'max'])
    if (cmd[f] !== undefined && cmd[f] !== null)
      throw notImplemented(`find.${f}`, 'index bounds cannot be given');
  if (cmd.returnKey) throw notImplemented('find.returnKey', 'index keys are not returned');
  if (cmd.showRecordId) throw notImplemented('find.showRecordId', 'documents have no record ids');
  if (cmd.ntoreturn !== undefined) throw notImplemented('find.ntoreturn', 'use limit and batchSize');
  for (const f of FIND_INTERNAL)
    if (cmd[f] !== undefined) throw notImplemented(`find.${f}`, 'it is internal to replication and sharding');
}

function findOptions(cmd: Document): QueryOptions & { projection?: Document } {
  const limit = nonNegative(optionalNumber(cmd, 'limit'), 'limit');
  const skip = nonNegative(optionalNumber(cmd, 'skip'), 'skip');
  const letVars = evaluateLet(optionalDoc(cmd, 'let'));
  return {
    filter: optionalDoc(cmd, 'filter') ?? {},
    sort: optionalDoc(cmd, 'sort'),
    projection: optionalDoc(cmd, 'projection'),
    ...(skip !== undefined ? { skip } : {}),
    ...(limit !== undefined ? { limit } : {}),
    hint: cmd.hint,
    ...(letVars ? { variables: letVars } : {}),
    collation: parseCollation(cmd.collation),
  };
}

const find: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'find');
  refuseFindOptions(cmd, 'find');
  const opts = findOptions(cmd);
  const batchSize = nonNegative(optionalNumber(cmd, 'batchSize'), 'batchSize');
  const coll = ctx.engine.getCollection(ctx.db, name);
  const shaped =
    coll && isView(coll)
      ? readView(ctx, coll, opts)
      : project(runQuery(coll, opts).docs, opts.projection, opts.filter);
  const single = optionalBool(cmd, 'singleBatch') ?? false;
  const reply = openCursor(ctx, `${ctx.db}.${name}`, shaped, batchSize, single);
  if (optionalBool(cmd, 'noCursorTimeout')) ctx.cursors.keepAlive(Number((reply.cursor as Document).id));
  return reply;
};

const getMore: CommandHandler = async (cmd, ctx) => {
  rejectUnknownFields(cmd, 'getMore', ['collection', 'batchSize', 'term', 'lastKnownCommittedOpTime']);
  for (const f of ['term', 'lastKnownCommittedOpTime'])
    if (cmd[f] !== undefined) throw notImplemented(`getMore.${f}`, 'it is internal to replication');
  const id = Number(cmd.getMore);
  if (typeof cmd.collection !== 'string')
    throw new CommandError('TypeMismatch', "BSON field 'getMore.collection' is missing or is not a string");
  const ns = `${ctx.db}.${cmd.collection}`;
  const cursor = ctx.cursors.get(id, ns);
  if (cursor.busy) throw new CommandError('BadValue', `cursor id ${id} is already in use`);
  const batchSize = nonNegative(optionalNumber(cmd, 'batchSize'), 'batchSize') ?? 0;
  const maxTimeMS = optionalNumber(cmd, 'maxTimeMS');
  cursor.busy = true;
  let batch;
  try {
    batch = await cursor.next(batchSize, maxTimeMS);
  } catch (err) {
    // As in MongoDB, a getMore that fails kills its cursor.
    ctx.cursors.kill(id);
    throw err;
  } finally {
    cursor.busy = false;
    cursor.lastUsed = Date.now();
  }
  if (batch.exhausted) ctx.cursors.kill(id);
  const out: Document = { nextBatch: batch.docs, id: Long.fromNumber(batch.exhausted ? 0 : id), ns };
  if (batch.postBatchResumeToken) out.postBatchResumeToken = batch.postBatchResumeToken;
  return { cursor: out, ok: 1 };
};

const killCursors: CommandHandler = (cmd, ctx) => {
  rejectUnknownFields(cmd, 'killCursors', ['cursors']);
  if (!Array.isArray(cmd.cursors))
    throw new CommandError('TypeMismatch', "BSON field 'killCursors.cursors' is missing or is not an array");
  const killed: Long[] = [];
  const notFound: Long[] = [];
  for (const raw of cmd.cursors as unknown[]) {
    const id = Number(raw);
    (ctx.cursors.kill(id) ? killed : notFound).push(Long.fromNumber(id));
  }
  return { cursorsKilled: killed, cursorsNotFound: notFound, cursorsAlive: [], cursorsUnknown: [], ok: 1 };
};

const count: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'count');
  // 'fields' is a legacy field MongoDB accepts and ignores: it cannot change a count.
  rejectUnknownFields(cmd, 'count', ['query', 'limit', 'skip', 'hint', 'collation', 'fields']);
  const query = optionalDoc(cmd, 'query') ?? {};
  const coll = ctx.engine.getCollection(ctx.db, name);
  const limit = Math.abs(optionalNumber(cmd, 'limit') ?? 0);
  const skip = nonNegative(optionalNumber(cmd, 'skip'), 'skip') ?? 0;
  if (coll && isView(coll)) {
    const docs = readView(ctx, coll, {
      filter: query,
      skip,
      limit,
      collation: parseCollation(cmd.collation),
    });
    return { n: docs.length, ok: 1 };
  }
  if (coll && Object.keys(query).length === 0 && cmd.hint === undefined) {
    const n = Math.max(0, coll.docs.size - skip);
    return { n: limit > 0 ? Math.min(limit, n) : n, ok: 1 };
  }
  const { docs } = runQuery(coll, {
    filter: query,
    limit,
    skip,
    hint: cmd.hint,
    collation: parseCollation(cmd.collation),
  });
  return { n: docs.length, ok: 1 };
};

const distinct: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'distinct');
  // hint is MongoDB 7.1's; it is honoured here rather than refused.
  rejectUnknownFields(cmd, 'distinct', ['key', 'query', 'hint', 'collation']);
  if (typeof cmd.key !== 'string')
    throw new CommandError('TypeMismatch', "BSON field 'distinct.key' is missing or is not a string");
  const key = cmd.key;
  const query = optionalDoc(cmd, 'query') ?? {};
  const collation = parseCollation(cmd.collation);
  const coll = ctx.engine.getCollection(ctx.db, name);
  const docs =
    coll && isView(coll)
      ? readView(ctx, coll, { filter: query, collation })
      : runQuery(coll, { filter: query, hint: cmd.hint, collation }).docs;
  const seen = new Map<string, unknown>();
  for (const doc of docs) {
    for (const v of pathValues(doc, key).values) {
      if (v === undefined) continue;
      const k = canonicalKey(v);
      if (!seen.has(k)) seen.set(k, v);
    }
  }
  let values = [...seen.values()];
  if (collation) {
    // Values equal under the collation count once; the first one met is the one reported.
    const kept: unknown[] = [];
    for (const v of values) if (!kept.some((k) => compareValues(k, v, collation.compare) === 0)) kept.push(v);
    values = kept;
  }
  values.sort((a, b) => compareValues(a, b, collation?.compare));
  return { values, ok: 1 };
};

function planStages(
  plan: Plan,
  keyPattern: Document | undefined,
  sortInMemory: boolean,
  limit: number | undefined,
): Document {
  let stage: Document;
  if (plan.stage === 'COLLSCAN' || plan.stage === 'EOF') stage = { stage: plan.stage, direction: 'forward' };
  else if (plan.stage === 'IDHACK') stage = { stage: 'IDHACK' };
  else
    stage = {
      stage: 'FETCH',
      inputStage: { stage: 'IXSCAN', indexName: plan.indexName, keyPattern, direction: 'forward' },
    };
  if (sortInMemory) stage = { stage: 'SORT', inputStage: stage };
  if (limit) stage = { stage: 'LIMIT', limitAmount: limit, inputStage: stage };
  return stage;
}

const VERBOSITIES = ['queryPlanner', 'executionStats', 'allPlansExecution'];

/** explain for find, count, distinct, findAndModify, update and delete (executes only the read side). */
const explain: CommandHandler = (cmd, ctx) => {
  const inner = cmd.explain as unknown;
  if (!isPlainObject(inner)) throw new CommandError('TypeMismatch', 'explain must be an object');
  rejectUnknownFields(cmd, 'explain', ['verbosity']);
  if (cmd.verbosity !== undefined && !VERBOSITIES.includes(cmd.verbosity as string))
    throw new CommandError(
      'BadValue',
      `Enumeration value '${String(cmd.verbosity)}' for field 'explain.verbosity' is not a valid value.`,
    );
  const verb = Object.keys(inner)[0] as string;
  const name = collectionArg(inner, verb);
  let opts: QueryOptions;
  switch (verb) {
    case 'find':
      refuseFindOptions(inner, 'find');
      opts = findOptions(inner);
      break;
    case 'count':
      opts = {
        filter: (inner.query as Document) ?? {},
        limit: Number(inner.limit ?? 0),
        skip: Number(inner.skip ?? 0),
        hint: inner.hint,
        collation: parseCollation(inner.collation),
      };
      break;
    case 'distinct':
      opts = {
        filter: (inner.query as Document) ?? {},
        hint: inner.hint,
        collation: parseCollation(inner.collation),
      };
      break;
    case 'findAndModify':
    case 'findandmodify':
      opts = {
        filter: (inner.query as Document) ?? {},
        sort: inner.sort,
        limit: 1,
        hint: inner.hint,
        collation: parseCollation(inner.collation),
      };
      break;
    case 'update':
    case 'delete': {
      const st =
        ((inner[verb === 'update' ? 'updates' : 'deletes'] as Document[] | undefined) ?? [])[0] ?? {};
      const limit = verb === 'update' ? (st.multi ? 0 : 1) : Number(st.limit ?? 0);
      opts = {
        filter: (st.q as Document) ?? {},
        limit,
        hint: st.hint,
        sort: st.sort,
        collation: parseCollation(st.collation),
      };
      break;
    }
    default:
      throw new CommandError(
        'CommandNotFound',
        `explain is not supported for '${verb}' by the jobd embedded server`,
      );
  }
  const coll = ctx.engine.getCollection(ctx.db, name);
  const started = Date.now();
  const { docs, plan } = runQuery(coll, opts);
  const index = plan.indexName ? coll?.indexes.get(plan.indexName) : undefined;
  const sortInMemory = !plan.sorted;
  const winningPlan = planStages(plan, index?.spec.key, sortInMemory && opts.sort !== undefined, opts.limit);
  return {
    explainVersion: '1',
    queryPlanner: {
      namespace: `${ctx.db}.${name}`,
      parsedQuery: opts.filter ?? {},
      winningPlan,
      rejectedPlans: [],
    },
    executionStats: {
      executionSuccess: true,
      nReturned: docs.length,
      executionTimeMillis: Date.now() - started,
      totalKeysExamined: plan.stats.keysExamined,
      totalDocsExamined: plan.stats.docsExamined,
      executionStages: winningPlan,
    },
    serverInfo: { host: ctx.server.host, port: ctx.server.port, version: SERVER_VERSION },
    command: inner,
    ok: 1,
  };
};

export const readCommands: Record<string, CommandHandler> = {
  find,
  getMore,
  killCursors,
  count,
  distinct,
  explain,
};
