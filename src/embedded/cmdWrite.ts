/**
 * Write commands: insert, update, delete, findAndModify. Each runs synchronously from start to
 * finish, so it is atomic with respect to every other command.
 */
import type { Document } from 'bson';
import { CommandError, isInternalFault, toCommandError } from './errors.js';
import { GENERATED_ID_BYTES, MAX_WRITE_BATCH_SIZE, storedSizeBound } from './limits.js';
import { isPlainObject, sameBson } from './bsonOrder.js';
import type { Collection } from './collection.js';
import type { Savepoint, WriteOptions } from './engine.js';
import { evaluateLet, project } from './mql.js';
import { runQuery } from './query.js';
import { parseCollation } from './collation.js';
import { assertWritable } from './views.js';
import {
  GROWTH_PER_REQUEST_BYTE,
  applyUpdateReporting,
  planSimpleUpdate,
  buildUpsert,
  isReplacement,
  validateUpdate,
  withId,
  type UpdateSpec,
} from './update.js';
import {
  collectionArg,
  notImplemented,
  optionalBool,
  optionalDoc,
  rejectUnknownFields,
  rejectUnknownSubfields,
  type CommandContext,
  type CommandHandler,
} from './commandContext.js';

/** Fields of MongoDB's write commands that are internal to sharding, time series or encryption. */
const WRITE_INTERNAL = ['collectionUUID', 'isTimeseriesNamespace', 'encryptionInformation'];

/** The fields every write command takes (MongoDB's WriteCommandRequestBase), plus the command's own. */
function refuseWriteFields(cmd: Document, command: string, own: readonly string[]): void {
  let known = WRITE_FIELDS.get(command);
  if (!known) {
    known = [...own, 'ordered', 'bypassDocumentValidation', 'stmtIds', ...WRITE_INTERNAL];
    WRITE_FIELDS.set(command, known);
  }
  rejectUnknownFields(cmd, command, known);
  for (const f of WRITE_INTERNAL) if (cmd[f] !== undefined) throw notImplemented(`${command}.${f}`);
}

/** Each write command's known fields, built on its first use (a command always passes the same own). */
const WRITE_FIELDS = new Map<string, readonly string[]>();

/** Each statement's fields are parsed before any statement runs, as MongoDB parses the whole command. */
function refuseStatementFields(list: Document[], path: string, known: string[]): void {
  for (const st of list) {
    if (!isPlainObject(st)) continue;
    rejectUnknownSubfields(st, path, known);
    if (st.sampleId !== undefined) throw notImplemented(`${path}.sampleId`, 'queries are not sampled');
  }
}

/**
 * The write error for statement `index`. A statement that failed on a fault (not a refusal) is taken
 * back whole, so no half of it stays; the statements before it stay, as after any write error.
 */
function writeError(
  ctx: CommandContext,
  command: string,
  sp: Savepoint,
  index: number,
  err: unknown,
): Document {
  if (isInternalFault(err)) {
    ctx.engine.rollBackTo(sp);
    ctx.log?.(
      `jobd-embedded: statement ${index} of command '${command}' on connection ${ctx.connectionId} failed with an internal error and was undone: ${describeFault(err)}`,
    );
  }
  const e = toCommandError(err);
  return { index, code: e.code, codeName: e.codeName, errmsg: e.message, ...e.extra };
}

function describeFault(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

function statements(cmd: Document, field: string): Document[] {
  const list = cmd[field] as unknown;
  if (!Array.isArray(list))
    throw new CommandError('TypeMismatch', `BSON field '${field}' is missing or is not an array`);
  if (list.length === 0 || list.length > MAX_WRITE_BATCH_SIZE)
    throw new CommandError(
      'InvalidLength',
      `Write batch sizes must be between 1 and ${MAX_WRITE_BATCH_SIZE}. Got ${list.length} operations.`,
    );
  return list as Document[];
}

/**
 * The write options of an update's new version: after a direct update, a bound on its size from the
 * old version's and the request's (see applyUpdateReporting), which spares measuring it. `scratch` is
 * the command's one object for that (Engine.replace reads its options and keeps nothing), so an
 * updateMany does not make one per document.
 */
function updateOptions(
  ctx: CommandContext,
  before: Document,
  direct: boolean,
  wopts: WriteOptions,
  scratch: WriteOptions,
): WriteOptions {
  const prior = direct && ctx.requestSize !== undefined ? storedSizeBound(before) : undefined;
  if (prior === undefined) return wopts;
  scratch.bypassValidation = wopts.bypassValidation;
  scratch.origin = wopts.origin;
  scratch.sizeBound = prior + GROWTH_PER_REQUEST_BYTE * (ctx.requestSize as number) + 64;
  return scratch;
}

function unchanged(a: Document, b: Document): boolean {
  return sameBson(a, b);
}

const insert: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'insert');
  refuseWriteFields(cmd, 'insert', ['documents']);
  const docs = statements(cmd, 'documents');
  const ordered = optionalBool(cmd, 'ordered') ?? true;
  const coll = ctx.engine.ensureCollection(ctx.db, name);
  assertWritable(coll);
  // Each document came in the request, so the request's size bounds its own (plus a generated _id).
  const wopts: WriteOptions = {
    bypassValidation: cmd.bypassDocumentValidation === true,
    ...(ctx.requestSize !== undefined ? { sizeBound: ctx.requestSize + GENERATED_ID_BYTES } : {}),
  };
  let n = 0;
  const writeErrors: Document[] = [];
  for (let i = 0; i < docs.length; i++) {
    const sp = ctx.engine.savepoint();
    try {
      const doc = docs[i];
      if (!isPlainObject(doc))
        throw new CommandError('TypeMismatch', 'Each inserted document must be an object');
      ctx.engine.insert(coll, withId(doc), wopts);
      n++;
    } catch (err) {
      writeErrors.push(writeError(ctx, 'insert', sp, i, err));
      if (ordered) break;
    }
  }
  const reply: Document = { n, ok: 1 };
  if (writeErrors.length > 0) reply.writeErrors = writeErrors;
  return reply;
};

interface UpdateOutcome {
  n: number;
  nModified: number;
  upsertedId?: unknown;
}

function runUpdate(
  ctx: CommandContext,
  coll: Collection,
  st: Document,
  letVars: Document | undefined,
  wopts: WriteOptions,
): UpdateOutcome {
  const q = (st.q ?? {}) as Document;
  if (!isPlainObject(q)) throw new CommandError('TypeMismatch', 'The update filter (q) must be an object');
  const u = st.u as unknown;
  validateUpdate(u);
  const multi = Boolean(st.multi);
  if (multi && isReplacement(u as UpdateSpec))
    throw new CommandError('FailedToParse', 'multi update is not supported for replacement-style update');
  const arrayFilters = st.arrayFilters as Document[] | undefined;
  if (arrayFilters !== undefined && !Array.isArray(arrayFilters))
    throw new CommandError('TypeMismatch', 'arrayFilters must be an array');
  const variables = { ...(letVars ?? {}), ...(evaluateLet(st.c as Document | undefined) ?? {}) };
  const collation = parseCollation(st.collation);
  const { docs } = runQuery(coll, {
    filter: q,
    limit: multi ? 0 : 1,
    hint: st.hint,
    sort: st.sort,
    variables,
    collation,
  });
  const opts = { arrayFilters, filter: q, variables };
  const replacement = isReplacement(u);
  const scratch: WriteOptions = {};
  // An updateMany works out the update's direct path once, not once per document.
  const plan = docs.length > 1 ? planSimpleUpdate(u) : undefined;
  let nModified = 0;
  for (const doc of docs) {
    const { doc: next, direct } = applyUpdateReporting(doc, u, opts, plan);
    if (unchanged(doc, next)) continue;
    ctx.engine.replace(coll, doc, next, replacement, updateOptions(ctx, doc, direct, wopts, scratch));
    nModified++;
  }
  if (docs.length === 0 && st.upsert) {
    const doc = buildUpsert(q, u, opts);
    ctx.engine.insert(coll, doc, { ...wopts, origin: 'upsert' });
    return { n: 1, nModified: 0, upsertedId: doc._id };
  }
  return { n: docs.length, nModified };
}

const update: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'update');
  refuseWriteFields(cmd, 'update', ['updates', 'let']);
  const list = statements(cmd, 'updates');
  // upsertSupplied is internal to sharded upserts; sort on a statement is MongoDB 8.0's.
  refuseStatementFields(list, 'update.updates', [
    'q',
    'u',
    'c',
    'upsert',
    'multi',
    'arrayFilters',
    'hint',
    'collation',
    'sampleId',
  ]);
  const ordered = optionalBool(cmd, 'ordered') ?? true;
  const letVars = evaluateLet(optionalDoc(cmd, 'let'));
  const wopts = { bypassValidation: cmd.bypassDocumentValidation === true };
  assertWritable(ctx.engine.getCollection(ctx.db, name));
  let n = 0;
  let nModified = 0;
  const upserted: Document[] = [];
  const writeErrors: Document[] = [];
  for (let i = 0; i < list.length; i++) {
    const sp = ctx.engine.savepoint();
    try {
      const st = list[i] as Document;
      const coll =
        ctx.engine.getCollection(ctx.db, name) ??
        (st.upsert ? ctx.engine.ensureCollection(ctx.db, name) : undefined);
      if (!coll) {
        validateUpdate(st.u);
        continue;
      }
      const r = runUpdate(ctx, coll, st, letVars, wopts);
      n += r.n;
      nModified += r.nModified;
      if (r.upsertedId !== undefined) upserted.push({ index: i, _id: r.upsertedId });
    } catch (err) {
      writeErrors.push(writeError(ctx, 'update', sp, i, err));
      if (ordered) break;
    }
  }
  const reply: Document = { n, nModified, ok: 1 };
  if (upserted.length > 0) reply.upserted = upserted;
  if (writeErrors.length > 0) reply.writeErrors = writeErrors;
  return reply;
};

const del: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'delete');
  refuseWriteFields(cmd, 'delete', ['deletes', 'let']);
  const list = statements(cmd, 'deletes');
  refuseStatementFields(list, 'delete.deletes', ['q', 'limit', 'hint', 'collation', 'sampleId']);
  const ordered = optionalBool(cmd, 'ordered') ?? true;
  const letVars = evaluateLet(optionalDoc(cmd, 'let'));
  assertWritable(ctx.engine.getCollection(ctx.db, name));
  let n = 0;
  const writeErrors: Document[] = [];
  for (let i = 0; i < list.length; i++) {
    const sp = ctx.engine.savepoint();
    try {
      const st = list[i] as Document;
      const limit = Number(st.limit ?? 0);
      if (limit !== 0 && limit !== 1)
        throw new CommandError(
          'FailedToParse',
          'The limit field in delete objects must be 0 or 1. Got ' + String(st.limit),
        );
      const q = (st.q ?? {}) as Document;
      if (!isPlainObject(q))
        throw new CommandError('TypeMismatch', 'The delete filter (q) must be an object');
      const coll = ctx.engine.getCollection(ctx.db, name);
      const { docs } = runQuery(coll, {
        filter: q,
        limit,
        hint: st.hint,
        variables: letVars,
        collation: parseCollation(st.collation),
      });
      if (!coll) continue;
      ctx.engine.deleteMany(coll, docs);
      n += docs.length;
    } catch (err) {
      writeErrors.push(writeError(ctx, 'delete', sp, i, err));
      if (ordered) break;
    }
  }
  const reply: Document = { n, ok: 1 };
  if (writeErrors.length > 0) reply.writeErrors = writeErrors;
  return reply;
};

const FIND_AND_MODIFY_FIELDS = [
  'query',
  'sort',
  'remove',
  'update',
  'new',
  'fields',
  'upsert',
  'arrayFilters',
  'hint',
  'collation',
  'let',
  'bypassDocumentValidation',
  ...WRITE_INTERNAL,
];

const findAndModify: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'findAndModify' in cmd ? 'findAndModify' : 'findandmodify');
  rejectUnknownFields(
    cmd,
    'findAndModify' in cmd ? 'findAndModify' : 'findandmodify',
    FIND_AND_MODIFY_FIELDS,
  );
  for (const f of WRITE_INTERNAL) if (cmd[f] !== undefined) throw notImplemented(`findAndModify.${f}`);
  const query = optionalDoc(cmd, 'query') ?? {};
  const remove = optionalBool(cmd, 'remove') ?? false;
  const returnNew = optionalBool(cmd, 'new') ?? false;
  const upsert = optionalBool(cmd, 'upsert') ?? false;
  const fields = optionalDoc(cmd, 'fields');
  const u = cmd.update as unknown;
  if (remove && u !== undefined)
    throw new CommandError('FailedToParse', 'Cannot specify both an update and remove=true');
  if (!remove && u === undefined)
    throw new CommandError('FailedToParse', 'Either an update or remove=true must be specified');
  if (remove && returnNew)
    throw new CommandError(
      'FailedToParse',
      "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document",
    );
  if (remove && upsert)
    throw new CommandError('FailedToParse', 'Cannot specify both upsert=true and remove=true');
  if (!remove) validateUpdate(u);
  const variables = evaluateLet(optionalDoc(cmd, 'let'));
  const arrayFilters = cmd.arrayFilters as Document[] | undefined;
  const shape = (doc: Document | null): Document | null =>
    doc && fields ? (project([doc], fields, query)[0] ?? null) : doc;

  const existing = ctx.engine.getCollection(ctx.db, name);
  assertWritable(existing);
  const wopts = { bypassValidation: cmd.bypassDocumentValidation === true };
  const { docs } = runQuery(existing, {
    filter: query,
    sort: cmd.sort,
    limit: 1,
    hint: cmd.hint,
    variables,
    collation: parseCollation(cmd.collation),
  });
  const doc = docs[0];
  if (remove) {
    if (!doc || !existing) return { lastErrorObject: { n: 0 }, value: null, ok: 1 };
    ctx.engine.delete(existing, doc);
    return { lastErrorObject: { n: 1 }, value: shape(doc), ok: 1 };
  }
  const spec = u as UpdateSpec;
  const opts = { arrayFilters, filter: query, ...(variables ? { variables } : {}) };
  if (doc && existing) {
    const { doc: next, direct } = applyUpdateReporting(doc, spec, opts);
    if (!unchanged(doc, next))
      ctx.engine.replace(
        existing,
        doc,
        next,
        isReplacement(spec),
        updateOptions(ctx, doc, direct, wopts, {}),
      );
    return { lastErrorObject: { n: 1, updatedExisting: true }, value: shape(returnNew ? next : doc), ok: 1 };
  }
  if (!upsert) return { lastErrorObject: { n: 0, updatedExisting: false }, value: null, ok: 1 };
  const coll = ctx.engine.ensureCollection(ctx.db, name);
  const created = buildUpsert(query, spec, opts);
  ctx.engine.insert(coll, created, { ...wopts, origin: 'upsert' });
  return {
    lastErrorObject: { n: 1, updatedExisting: false, upserted: created._id },
    value: returnNew ? shape(created) : null,
    ok: 1,
  };
};

export const writeCommands: Record<string, CommandHandler> = {
  insert,
  update,
  delete: del,
  findAndModify,
  findandmodify: findAndModify,
};
