/**
 * Namespace and index commands: create, drop, dropDatabase, listCollections, renameCollection,
 * createIndexes, listIndexes, dropIndexes.
 */
import { Long, type Document } from 'bson';
import { CommandError } from './errors.js';
import { canonicalKey, isPlainObject } from './bsonOrder.js';
import { ArrayCursor } from './cursor.js';
import { validateCollectionName } from './engine.js';
import type { IndexSpec } from './indexes.js';
import { checkCommitQuorum, parseIndexSpec, sameOptions } from './indexSpecs.js';
import { compileFilter } from './mql.js';
import {
  collectionArg,
  nonNegative,
  notImplemented,
  optionalBool,
  optionalDoc,
  optionalNumber,
  rejectUnknownFields,
  rejectUnknownSubfields,
  type CommandContext,
  type CommandHandler,
} from './commandContext.js';
import { isView, validateValidatorOptions, validateViewOptions } from './views.js';

/** create's options that this server honours and keeps with the collection. */
const CREATE_OPTIONS = [
  'size',
  'max',
  'validator',
  'validationLevel',
  'validationAction',
  'changeStreamPreAndPostImages',
  'storageEngine',
  'indexOptionDefaults',
  'viewOn',
  'pipeline',
  'idIndex',
];

/** create's fields (MongoDB's CreateCommand). storageEngine, indexOptionDefaults and flags tune storage only. */
const CREATE_FIELDS = [
  ...CREATE_OPTIONS,
  'capped',
  'timeseries',
  'clusteredIndex',
  'expireAfterSeconds',
  'collation',
  'autoIndexId',
  'encryptedFields',
  'temp',
  'flags',
];

function refuseCreateOptions(cmd: Document): void {
  rejectUnknownFields(cmd, 'create', CREATE_FIELDS);
  if (cmd.capped) throw notImplemented('create.capped', 'there are no capped collections');
  if (cmd.timeseries !== undefined)
    throw notImplemented('create.timeseries', 'there are no time series collections');
  if (cmd.clusteredIndex !== undefined && cmd.clusteredIndex !== false)
    throw notImplemented('create.clusteredIndex', 'there are no clustered collections');
  if (cmd.expireAfterSeconds !== undefined)
    throw new CommandError(
      'InvalidOptions',
      "'expireAfterSeconds' is only supported on clustered or time series collections; use a TTL index",
    );
  if (cmd.encryptedFields !== undefined)
    throw notImplemented('create.encryptedFields', 'there is no queryable encryption');
  if (cmd.temp) throw notImplemented('create.temp', 'there are no temporary collections');
  if (cmd.autoIndexId === false)
    throw notImplemented('create.autoIndexId: false', 'every collection has its _id index');
  const isView = cmd.viewOn !== undefined || cmd.pipeline !== undefined;
  if (!isView && cmd.collation !== undefined && (cmd.collation as Document | null)?.locale !== 'simple')
    throw notImplemented(
      'A default collation on a collection',
      'give the collation with each command instead',
    );
  const idIndex = cmd.idIndex as unknown;
  if (idIndex !== undefined) {
    if (!isPlainObject(idIndex) || canonicalKey(idIndex.key) !== canonicalKey({ _id: 1 }))
      throw new CommandError('BadValue', 'The _id index must have key { _id: 1 }');
    rejectUnknownSubfields(idIndex, 'create.idIndex', ['key', 'name', 'v', 'ns']);
  }
}

const create: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'create');
  refuseCreateOptions(cmd);
  const options: Document = {};
  for (const k of Object.keys(cmd)) if (CREATE_OPTIONS.includes(k)) options[k] = cmd[k];
  if (options.viewOn !== undefined || options.pipeline !== undefined) {
    if (cmd.collation !== undefined) options.collation = cmd.collation;
    validateViewOptions(options);
    if (options.pipeline === undefined) options.pipeline = [];
  } else {
    validateValidatorOptions(options);
    normalizeImagesOption(options);
  }
  ctx.engine.createCollection(ctx.db, name, options);
  return { ok: 1 };
};

const COLLMOD_OPTIONS = [
  'validator',
  'validationLevel',
  'validationAction',
  'viewOn',
  'pipeline',
  'changeStreamPreAndPostImages',
];

/**
 * changeStreamPreAndPostImages: { enabled: <bool> }, checked as MongoDB parses it. Stored only while
 * enabled, as MongoDB lists it among a collection's options only then.
 */
function normalizeImagesOption(options: Document): void {
  const value = options.changeStreamPreAndPostImages as unknown;
  if (value === undefined) return;
  if (!isPlainObject(value))
    throw new CommandError(
      'TypeMismatch',
      `BSON field 'changeStreamPreAndPostImages' is the wrong type '${Array.isArray(value) ? 'array' : typeof value}', expected type 'object'`,
    );
  for (const k of Object.keys(value))
    if (k !== 'enabled')
      throw new CommandError(
        'Location40415',
        `BSON field 'changeStreamPreAndPostImages.${k}' is an unknown field.`,
      );
  if (value.enabled === undefined)
    throw new CommandError(
      'Location40414',
      "BSON field 'changeStreamPreAndPostImages.enabled' is missing but a required field",
    );
  if (typeof value.enabled !== 'boolean')
    throw new CommandError(
      'TypeMismatch',
      `BSON field 'changeStreamPreAndPostImages.enabled' is the wrong type '${typeof value.enabled}', expected type 'bool'`,
    );
  if (value.enabled) options.changeStreamPreAndPostImages = { enabled: true };
  else delete options.changeStreamPreAndPostImages;
}

/** collMod's fields in MongoDB 7.0 that this server does not implement. */
const COLLMOD_NOT_IMPLEMENTED = [
  'index',
  'expireAfterSeconds',
  'timeseries',
  'timeseriesBucketsMayHaveMixedSchemaData',
  'cappedSize',
  'cappedMax',
  'dryRun',
  'collectionUUID',
];

const collMod: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'collMod');
  rejectUnknownFields(cmd, 'collMod', [...COLLMOD_OPTIONS, ...COLLMOD_NOT_IMPLEMENTED]);
  for (const k of COLLMOD_NOT_IMPLEMENTED) if (cmd[k] !== undefined) throw notImplemented(`collMod.${k}`);
  const coll = ctx.engine.getCollection(ctx.db, name);
  if (!coll) throw new CommandError('NamespaceNotFound', `ns does not exist: ${ctx.db}.${name}`);
  const changes: Document = {};
  for (const k of COLLMOD_OPTIONS) if (cmd[k] !== undefined) changes[k] = cmd[k];
  const options: Document = { ...coll.options, ...changes };
  if (isView(coll)) {
    if (
      'validator' in changes ||
      'validationLevel' in changes ||
      'validationAction' in changes ||
      'changeStreamPreAndPostImages' in changes
    ) {
      throw new CommandError(
        'InvalidOptions',
        `option not supported on a view: ${Object.keys(changes).join(', ')}`,
      );
    }
    validateViewOptions(options);
  } else {
    if ('viewOn' in changes || 'pipeline' in changes)
      throw new CommandError('InvalidOptions', `${ctx.db}.${name} is a collection, not a view`);
    validateValidatorOptions(options);
    normalizeImagesOption(options);
  }
  ctx.engine.setOptions(coll, options, changes);
  return { ok: 1 };
};

const drop: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'drop');
  rejectUnknownFields(cmd, 'drop', ['collectionUUID']);
  if (cmd.collectionUUID !== undefined) throw notImplemented('drop.collectionUUID');
  const coll = ctx.engine.getCollection(ctx.db, name);
  // MongoDB 7.0 no longer reports a missing namespace as an error.
  if (!coll) return { ok: 1 };
  const nIndexesWas = coll.indexes.size;
  ctx.engine.dropCollection(ctx.db, name);
  return { nIndexesWas, ns: `${ctx.db}.${name}`, ok: 1 };
};

const dropDatabase: CommandHandler = (cmd, ctx) => {
  rejectUnknownFields(cmd, 'dropDatabase', []);
  ctx.engine.dropDatabase(ctx.db);
  return { dropped: ctx.db, ok: 1 };
};

function cursorReply(
  ctx: CommandContext,
  ns: string,
  docs: Document[],
  batchSize: number | undefined,
): Document {
  // No batchSize: everything in the first batch; batchSize 0: an empty first batch.
  const { docs: first, rest } =
    batchSize === 0 ? { docs: [], rest: docs } : ArrayCursor.first(docs, batchSize ?? 0);
  let id = 0;
  if (rest.length > 0) {
    id = ctx.cursors.allocateId();
    ctx.cursors.add(new ArrayCursor(id, ns, rest));
  }
  return { cursor: { id: Long.fromNumber(id), ns, firstBatch: first }, ok: 1 };
}

/** Cursor options of the listing commands. */
function listingBatchSize(cmd: Document, command: string): number | undefined {
  const cursor = optionalDoc(cmd, 'cursor');
  if (!cursor) return undefined;
  rejectUnknownSubfields(cursor, `${command}.cursor`, ['batchSize']);
  return nonNegative(optionalNumber(cursor, 'batchSize'), 'batchSize');
}

const listCollections: CommandHandler = (cmd, ctx) => {
  // authorizedCollections only narrows the list for users without listCollections; there is no access control.
  rejectUnknownFields(cmd, 'listCollections', [
    'cursor',
    'filter',
    'nameOnly',
    'authorizedCollections',
    'includePendingDrops',
  ]);
  const batchSize = listingBatchSize(cmd, 'listCollections');
  const filter = optionalDoc(cmd, 'filter');
  const nameOnly = Boolean(cmd.nameOnly);
  const infos = ctx.engine
    .listCollections(ctx.db)
    .map((c): Document =>
      isView(c)
        ? { name: c.name, type: 'view', options: c.options, info: { readOnly: true } }
        : {
            name: c.name,
            type: 'collection',
            options: c.options,
            info: { readOnly: false, uuid: c.uuid },
            idIndex: { v: 2, key: { _id: 1 }, name: '_id_' },
          },
    )
    .sort((a, b) =>
      (a.name as string) < (b.name as string) ? -1 : (a.name as string) > (b.name as string) ? 1 : 0,
    );
  const matcher = compileFilter(filter);
  let out: Document[] = infos.filter((i) => matcher.test(i));
  if (nameOnly) out = out.map((i) => ({ name: i.name, type: i.type }));
  return cursorReply(ctx, `${ctx.db}.$cmd.listCollections`, out, batchSize);
};

const renameCollection: CommandHandler = (cmd, ctx) => {
  if (ctx.db !== 'admin')
    throw new CommandError('Unauthorized', 'renameCollection may only be run against the admin database.');
  // stayTemp only concerns temporary collections, which this server does not create.
  rejectUnknownFields(cmd, 'renameCollection', ['to', 'dropTarget', 'stayTemp', 'collectionUUID']);
  if (cmd.collectionUUID !== undefined) throw notImplemented('renameCollection.collectionUUID');
  const from = String(cmd.renameCollection);
  const to = String(cmd.to);
  const [fromDb, ...fromRest] = from.split('.');
  const [toDb, ...toRest] = to.split('.');
  if (!fromDb || fromRest.length === 0)
    throw new CommandError('InvalidNamespace', `Invalid source namespace: ${from}`);
  if (!toDb || toRest.length === 0)
    throw new CommandError('InvalidNamespace', `Invalid target namespace: ${to}`);
  if (from === to) throw new CommandError('IllegalOperation', `Can't rename a collection to itself`);
  ctx.engine.renameCollection(fromDb, fromRest.join('.'), toDb, toRest.join('.'), Boolean(cmd.dropTarget));
  return { ok: 1 };
};

const createIndexes: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'createIndexes');
  rejectUnknownFields(cmd, 'createIndexes', [
    'indexes',
    'commitQuorum',
    'ignoreUnknownIndexOptions',
    'collectionUUID',
    'isTimeseriesNamespace',
  ]);
  for (const f of ['collectionUUID', 'isTimeseriesNamespace'])
    if (cmd[f] !== undefined) throw notImplemented(`createIndexes.${f}`);
  checkCommitQuorum(cmd.commitQuorum);
  if (!Array.isArray(cmd.indexes) || cmd.indexes.length === 0)
    throw new CommandError('BadValue', 'Must specify at least one index to create');
  const ignoreUnknown = optionalBool(cmd, 'ignoreUnknownIndexOptions') ?? false;
  const specs = cmd.indexes.map((raw) => parseIndexSpec(raw, ignoreUnknown));
  const existed = ctx.engine.getCollection(ctx.db, name);
  const coll = ctx.engine.ensureCollection(ctx.db, name);
  const before = coll.indexes.size;
  const toCreate: IndexSpec[] = [];
  for (const spec of specs) {
    const sameName = coll.indexes.get(spec.name)?.spec ?? toCreate.find((s) => s.name === spec.name);
    const keyCanon = canonicalKey(spec.key);
    if (sameName) {
      if (canonicalKey(sameName.key) !== keyCanon) {
        throw new CommandError(
          'IndexKeySpecsConflict',
          `An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: ${JSON.stringify(spec)}, existing index: ${JSON.stringify(sameName)}`,
        );
      }
      if (!sameOptions(sameName, spec)) {
        throw new CommandError(
          'IndexOptionsConflict',
          `An equivalent index already exists with the same name but different options. Requested index: ${JSON.stringify(spec)}, existing index: ${JSON.stringify(sameName)}`,
        );
      }
      continue;
    }
    for (const idx of coll.indexes.values()) {
      if (canonicalKey(idx.spec.key) !== keyCanon) continue;
      if (
        canonicalKey(idx.spec.partialFilterExpression ?? null) !==
        canonicalKey(spec.partialFilterExpression ?? null)
      )
        continue;
      throw new CommandError(
        'IndexOptionsConflict',
        `Index already exists with a different name: ${idx.name}`,
      );
    }
    toCreate.push(spec);
  }
  ctx.engine.createIndexes(coll, toCreate);
  const reply: Document = {
    numIndexesBefore: before,
    numIndexesAfter: coll.indexes.size,
    createdCollectionAutomatically: !existed,
    ok: 1,
  };
  if (toCreate.length === 0) reply.note = 'all indexes already exist';
  return reply;
};

const listIndexes: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'listIndexes');
  rejectUnknownFields(cmd, 'listIndexes', [
    'cursor',
    'collectionUUID',
    'includeBuildUUIDs',
    'includeIndexBuildInfo',
  ]);
  for (const f of ['collectionUUID', 'includeBuildUUIDs', 'includeIndexBuildInfo'])
    if (cmd[f] !== undefined) throw notImplemented(`listIndexes.${f}`);
  const batchSize = listingBatchSize(cmd, 'listIndexes');
  const coll = ctx.engine.getCollection(ctx.db, name);
  if (!coll) throw new CommandError('NamespaceNotFound', `ns does not exist: ${ctx.db}.${name}`);
  const docs = [...coll.indexes.values()].map((i) => i.describe());
  return cursorReply(ctx, `${ctx.db}.${name}`, docs, batchSize);
};

const dropIndexes: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'dropIndexes');
  rejectUnknownFields(cmd, 'dropIndexes', ['index', 'collectionUUID']);
  if (cmd.collectionUUID !== undefined) throw notImplemented('dropIndexes.collectionUUID');
  validateCollectionName(ctx.db, name);
  const coll = ctx.engine.getCollection(ctx.db, name);
  if (!coll) throw new CommandError('NamespaceNotFound', `ns not found ${ctx.db}.${name}`);
  const nIndexesWas = coll.indexes.size;
  const which = cmd.index as unknown;
  const names: string[] = [];
  if (which === '*') {
    for (const n of coll.indexes.keys()) if (n !== '_id_') names.push(n);
  } else {
    const list = Array.isArray(which) ? which : [which];
    for (const w of list) {
      let found: string | undefined;
      if (typeof w === 'string') found = coll.indexes.has(w) ? w : undefined;
      else if (isPlainObject(w))
        found = [...coll.indexes.values()].find((i) => canonicalKey(i.spec.key) === canonicalKey(w))?.name;
      if (!found)
        throw new CommandError(
          'IndexNotFound',
          `index not found with name [${typeof w === 'string' ? w : JSON.stringify(w)}]`,
        );
      if (found === '_id_') throw new CommandError('InvalidOptions', 'cannot drop _id index');
      names.push(found);
    }
  }
  for (const n of names) ctx.engine.dropIndex(coll, n);
  return { nIndexesWas, ok: 1 };
};

const collStats: CommandHandler = (cmd, ctx) => {
  const name = collectionArg(cmd, 'collStats');
  const coll = ctx.engine.getCollection(ctx.db, name);
  return {
    ns: `${ctx.db}.${name}`,
    count: coll?.docs.size ?? 0,
    size: 0,
    storageSize: 0,
    nindexes: coll?.indexes.size ?? 0,
    ok: 1,
  };
};

const dbStats: CommandHandler = (_cmd, ctx) => {
  const colls = ctx.engine.listCollections(ctx.db);
  return {
    db: ctx.db,
    collections: colls.length,
    objects: colls.reduce((n, c) => n + c.docs.size, 0),
    indexes: colls.reduce((n, c) => n + c.indexes.size, 0),
    dataSize: 0,
    storageSize: 0,
    ok: 1,
  };
};

export const ddlCommands: Record<string, CommandHandler> = {
  create,
  collMod,
  drop,
  dropDatabase,
  listCollections,
  renameCollection,
  createIndexes,
  listIndexes,
  dropIndexes,
  collStats,
  dbStats,
};
