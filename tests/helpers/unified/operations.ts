/**
 * Entity operations of the unified test format, mapped onto the official driver. Arguments arrive as
 * the case file names them (all options flat beside the required parameters); results leave as plain
 * documents (model objects converted, cursors fully iterated) ready for matching.
 */
import {
  MongoClient,
  type AnyBulkWriteOperation,
  type BulkWriteResult,
  type ChangeStream,
  type ClientSession,
  type Collection,
  type Db,
  type Document,
  type FindCursor,
} from 'mongodb';
import {
  EntityMap,
  UnsupportedCase,
  isCursorEntity,
  readPreferenceFrom,
  type CursorEntity,
} from './entities.js';
import { MatchError } from './match.js';

export interface OperationContext {
  entities: EntityMap;
  mapDb(name: string): string;
  /** Whether a database belongs to this run (client-wide change streams see every database). */
  ownsDb(name: string): boolean;
  /** How long one iteration may wait for a document before the operation fails. */
  waitMs: number;
}

type Args = Document;

/** Splits off named parameters and returns the remaining keys as the options object. */
function take(args: Args, ...names: string[]): [Document, Document] {
  const params: Document = {};
  const options: Document = {};
  for (const [k, v] of Object.entries(args)) {
    if (names.includes(k)) params[k] = v;
    else options[k] = v;
  }
  return [params, options];
}

function prepareArgs(raw: Args | undefined, ctx: OperationContext): Args {
  const args: Args = { ...(raw ?? {}) };
  if (typeof args.session === 'string') args.session = ctx.entities.session(args.session) as ClientSession;
  if (args.readPreference) args.readPreference = readPreferenceFrom(args.readPreference as Document);
  if (typeof args.returnDocument === 'string') {
    const rd = args.returnDocument.toLowerCase();
    if (rd !== 'before' && rd !== 'after')
      throw new Error(`returnDocument must be Before or After, got ${args.returnDocument}`);
    args.returnDocument = rd;
  }
  return args;
}

export function bulkWriteResultDoc(result: BulkWriteResult): Document {
  return {
    deletedCount: result.deletedCount,
    insertedCount: result.insertedCount,
    insertedIds: { ...result.insertedIds },
    matchedCount: result.matchedCount,
    modifiedCount: result.modifiedCount,
    upsertedCount: result.upsertedCount,
    upsertedIds: { ...result.upsertedIds },
  };
}

/**
 * The driver (6.x) replaces an explicit `_id: null` with a generated ObjectId before sending. When every
 * document to insert names its _id, asking the driver not to generate ids sends them exactly as given,
 * so the server sees the case's documents.
 */
function keepGivenIds(documents: Document[], options: Document): Document {
  const allGiven =
    documents.length > 0 && documents.every((d) => Object.prototype.hasOwnProperty.call(d, '_id'));
  return allGiven && options.forceServerObjectId === undefined
    ? { ...options, forceServerObjectId: true }
    : options;
}

function mapToDoc(m: unknown): Document | undefined {
  if (!(m instanceof Map)) return undefined;
  const out: Document = {};
  for (const [k, v] of m) out[String(k)] = v;
  return out;
}

export function clientBulkWriteResultDoc(result: Document): Document {
  const out: Document = {
    insertedCount: result.insertedCount,
    upsertedCount: result.upsertedCount,
    matchedCount: result.matchedCount,
    modifiedCount: result.modifiedCount,
    deletedCount: result.deletedCount,
  };
  if (result.acknowledged === false) out.acknowledged = false;
  const inserts = mapToDoc(result.insertResults);
  const updates = mapToDoc(result.updateResults);
  const deletes = mapToDoc(result.deleteResults);
  if (inserts) out.insertResults = inserts;
  if (updates) out.updateResults = updates;
  if (deletes) out.deleteResults = deletes;
  return out;
}

function bulkModels(requests: Document[]): AnyBulkWriteOperation[] {
  return requests.map((request) => {
    const [name, model] = Object.entries(request)[0] as [string, Document];
    if (!['insertOne', 'updateOne', 'updateMany', 'replaceOne', 'deleteOne', 'deleteMany'].includes(name)) {
      throw new UnsupportedCase(`unknown bulkWrite model ${name}`);
    }
    return { [name]: model } as AnyBulkWriteOperation;
  });
}

function clientBulkModels(models: Document[], ctx: OperationContext): Document[] {
  return models.map((entry) => {
    const [name, model] = Object.entries(entry)[0] as [string, Document];
    return { ...model, name, namespace: mapNamespace(String(model.namespace), ctx) };
  });
}

export function mapNamespace(ns: string, ctx: OperationContext): string {
  const dot = ns.indexOf('.');
  return dot < 0 ? ctx.mapDb(ns) : `${ctx.mapDb(ns.slice(0, dot))}${ns.slice(dot)}`;
}

/** $out / $merge stages may name another database of the case: it is renamed like the entities. */
function mapPipeline(pipeline: Document[], ctx: OperationContext): Document[] {
  return pipeline.map((stage) => {
    if (stage.$out && typeof stage.$out === 'object' && typeof stage.$out.db === 'string') {
      return { $out: { ...stage.$out, db: ctx.mapDb(stage.$out.db) } };
    }
    const into = stage.$merge?.into;
    if (into && typeof into === 'object' && typeof into.db === 'string') {
      return { $merge: { ...stage.$merge, into: { ...into, db: ctx.mapDb(into.db) } } };
    }
    return stage;
  });
}

type Iterable =
  | FindCursor
  | { next(): Promise<Document | null>; tryNext(): Promise<Document | null>; close(): Promise<void> };

class DriverCursor implements CursorEntity {
  readonly kind = 'cursor' as const;
  buffered: Document[] = [];
  constructor(
    private readonly cursor: Iterable,
    /** Events to pass over (a client-wide stream also sees the databases of other test files). */
    private readonly skip: (doc: Document) => boolean = () => false,
  ) {}

  /** Opens the server-side cursor now (find: first batch fetched, nothing consumed). */
  async open(): Promise<void> {
    if ('hasNext' in this.cursor && typeof this.cursor.hasNext === 'function') await this.cursor.hasNext();
  }

  async next(): Promise<Document | null> {
    for (;;) {
      const doc = this.buffered.shift() ?? ((await this.cursor.next()) as Document | null);
      if (!doc || !this.skip(doc)) return doc;
    }
  }

  async tryNext(): Promise<Document | null> {
    for (;;) {
      const doc = this.buffered.shift() ?? ((await this.cursor.tryNext()) as Document | null);
      if (!doc || !this.skip(doc)) return doc;
    }
  }

  async close(): Promise<void> {
    try {
      await this.cursor.close();
    } catch {
      // Closing errors are suppressed, as the format asks.
    }
  }
}

/**
 * A change stream whose aggregate has run: the driver opens it lazily, but a case's later writes must
 * come after its start. cursorInit is the driver's hook for exactly this (its own unified runner
 * calls it); the aggregate's error, if any, is the operation's error.
 */
async function openChangeStream(
  stream: ChangeStream,
  skip?: (doc: Document) => boolean,
): Promise<DriverCursor> {
  const inner = (stream as unknown as { cursor: { cursorInit(): Promise<void> } }).cursor;
  await inner.cursorInit();
  return new DriverCursor(stream, skip);
}

async function collectionOperation(
  name: string,
  coll: Collection,
  args: Args,
  ctx: OperationContext,
): Promise<unknown> {
  switch (name) {
    case 'aggregate': {
      const [{ pipeline }, options] = take(args, 'pipeline');
      return coll.aggregate(mapPipeline(pipeline as Document[], ctx), options).toArray();
    }
    case 'bulkWrite': {
      const [{ requests }, options] = take(args, 'requests');
      const inserted = (requests as Document[])
        .filter((r) => r.insertOne)
        .map((r) => r.insertOne.document as Document);
      return bulkWriteResultDoc(
        await coll.bulkWrite(bulkModels(requests as Document[]), keepGivenIds(inserted, options)),
      );
    }
    case 'count': {
      const [{ filter }, options] = take(args, 'filter');
      return coll.count(filter as Document | undefined, options);
    }
    case 'countDocuments': {
      const [{ filter }, options] = take(args, 'filter');
      return coll.countDocuments(filter as Document, options);
    }
    case 'estimatedDocumentCount':
      return coll.estimatedDocumentCount(args);
    case 'createIndex': {
      const [{ keys }, options] = take(args, 'keys');
      return coll.createIndex(keys as Document, options);
    }
    case 'dropIndex': {
      const [{ name: indexName }, options] = take(args, 'name');
      return coll.dropIndex(indexName as string, options);
    }
    case 'dropIndexes':
      return coll.dropIndexes(args);
    case 'listIndexes':
      return coll.listIndexes(args).toArray();
    case 'listIndexNames':
      return (await coll.listIndexes(args).toArray()).map((i) => i.name as string);
    case 'deleteOne':
    case 'deleteMany': {
      const [{ filter }, options] = take(args, 'filter');
      const result =
        name === 'deleteOne'
          ? await coll.deleteOne(filter as Document, options)
          : await coll.deleteMany(filter as Document, options);
      return result;
    }
    case 'distinct': {
      const [{ fieldName, filter }, options] = take(args, 'fieldName', 'filter');
      return coll.distinct(fieldName as string, (filter ?? {}) as Document, options);
    }
    case 'find': {
      const [{ filter }, options] = take(args, 'filter');
      return coll.find((filter ?? {}) as Document, options).toArray();
    }
    case 'findOne': {
      const [{ filter }, options] = take(args, 'filter');
      return coll.findOne((filter ?? {}) as Document, options);
    }
    case 'createFindCursor': {
      const [{ filter }, options] = take(args, 'filter');
      const cursor = new DriverCursor(coll.find((filter ?? {}) as Document, options));
      await cursor.open();
      return cursor;
    }
    case 'createChangeStream': {
      const [{ pipeline }, options] = take(args, 'pipeline');
      return openChangeStream(coll.watch((pipeline ?? []) as Document[], options));
    }
    case 'findOneAndDelete': {
      const [{ filter }, options] = take(args, 'filter');
      return coll.findOneAndDelete(filter as Document, options);
    }
    case 'findOneAndReplace': {
      const [{ filter, replacement }, options] = take(args, 'filter', 'replacement');
      return coll.findOneAndReplace(filter as Document, replacement as Document, options);
    }
    case 'findOneAndUpdate': {
      const [{ filter, update }, options] = take(args, 'filter', 'update');
      return coll.findOneAndUpdate(filter as Document, update as Document, options);
    }
    case 'insertOne': {
      const [{ document }, options] = take(args, 'document');
      return coll.insertOne(document as Document, keepGivenIds([document as Document], options));
    }
    case 'insertMany': {
      const [{ documents }, options] = take(args, 'documents');
      return coll.insertMany(documents as Document[], keepGivenIds(documents as Document[], options));
    }
    case 'replaceOne': {
      const [{ filter, replacement }, options] = take(args, 'filter', 'replacement');
      return coll.replaceOne(filter as Document, replacement as Document, options);
    }
    case 'updateOne':
    case 'updateMany': {
      const [{ filter, update }, options] = take(args, 'filter', 'update');
      return name === 'updateOne'
        ? coll.updateOne(filter as Document, update as Document, options)
        : coll.updateMany(filter as Document, update as Document[], options);
    }
    case 'rename': {
      const [{ to }, options] = take(args, 'to');
      await coll.rename(to as string, options);
      return undefined;
    }
    case 'drop':
      return coll.drop(args);
    default:
      throw new UnsupportedCase(`collection operation ${name} is not mapped by this runner`);
  }
}

async function databaseOperation(name: string, db: Db, args: Args, ctx: OperationContext): Promise<unknown> {
  switch (name) {
    case 'aggregate': {
      const [{ pipeline }, options] = take(args, 'pipeline');
      return db.aggregate(mapPipeline(pipeline as Document[], ctx), options).toArray();
    }
    case 'runCommand': {
      const [{ command }, options] = take(args, 'command', 'commandName');
      return db.command(command as Document, options);
    }
    case 'createCollection': {
      const [{ collection }, options] = take(args, 'collection');
      await db.createCollection(collection as string, options);
      return undefined;
    }
    case 'dropCollection': {
      const [{ collection }, options] = take(args, 'collection');
      return db.dropCollection(collection as string, options);
    }
    case 'listCollections': {
      const [{ filter }, options] = take(args, 'filter');
      return db.listCollections((filter ?? {}) as Document, options).toArray();
    }
    case 'listCollectionNames': {
      const [{ filter }, options] = take(args, 'filter');
      return (
        await db.listCollections((filter ?? {}) as Document, { ...options, nameOnly: true }).toArray()
      ).map((c) => c.name);
    }
    case 'modifyCollection': {
      const [{ collection }, options] = take(args, 'collection');
      return db.command({ collMod: collection, ...options });
    }
    case 'createChangeStream': {
      const [{ pipeline }, options] = take(args, 'pipeline');
      return openChangeStream(db.watch((pipeline ?? []) as Document[], options));
    }
    default:
      throw new UnsupportedCase(`database operation ${name} is not mapped by this runner`);
  }
}

async function clientOperation(
  name: string,
  client: MongoClient,
  args: Args,
  ctx: OperationContext,
): Promise<unknown> {
  switch (name) {
    case 'clientBulkWrite': {
      const [{ models }, options] = take(args, 'models');
      const result = await client.bulkWrite(clientBulkModels(models as Document[], ctx) as never, options);
      return clientBulkWriteResultDoc(result as unknown as Document);
    }
    case 'listDatabases':
      return (await client.db('admin').admin().listDatabases(args)).databases;
    case 'listDatabaseNames':
      return (await client.db('admin').admin().listDatabases(args)).databases.map((d) => d.name);
    case 'createChangeStream': {
      const [{ pipeline }, options] = take(args, 'pipeline');
      const ns = (doc: Document): unknown => (doc.ns as Document | undefined)?.db;
      return openChangeStream(
        client.watch((pipeline ?? []) as Document[], options),
        (doc) => typeof ns(doc) === 'string' && !ctx.ownsDb(ns(doc) as string),
      );
    }
    default:
      throw new UnsupportedCase(`client operation ${name} is not mapped by this runner`);
  }
}

/** Resolves with the promise's value, or fails once `ms` have passed (the promise is then abandoned). */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MatchError(`${what}: nothing within ${ms} ms`)), ms);
  });
  // An abandoned promise may still settle (or fail) later: that must not become an unhandled rejection.
  promise.catch(() => {});
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

async function cursorOperation(name: string, cursor: CursorEntity, ctx: OperationContext): Promise<unknown> {
  switch (name) {
    case 'iterateUntilDocumentOrError': {
      let doc: Document | null;
      try {
        doc = await withDeadline(cursor.next(), ctx.waitMs, 'iterateUntilDocumentOrError');
      } catch (err) {
        // A stream left waiting would deliver its next event to nobody; close it now (the test's
        // client is closed at the end of the test in any case).
        if (err instanceof MatchError) await cursor.close();
        throw err;
      }
      if (!doc) throw new MatchError('iterateUntilDocumentOrError: the cursor is exhausted');
      return doc;
    }
    case 'iterateOnce':
      return (await withDeadline(cursor.tryNext(), ctx.waitMs, 'iterateOnce')) ?? undefined;
    case 'close':
      await cursor.close();
      return undefined;
    default:
      throw new UnsupportedCase(`cursor operation ${name} is not mapped by this runner`);
  }
}

async function sessionOperation(name: string, session: ClientSession): Promise<unknown> {
  switch (name) {
    case 'endSession':
      await session.endSession();
      return undefined;
    default:
      throw new UnsupportedCase(`session operation ${name} is not mapped by this runner`);
  }
}

/** Runs one entity operation and returns its result as a matchable value. */
export async function runEntityOperation(
  object: string,
  name: string,
  rawArgs: Args | undefined,
  ctx: OperationContext,
): Promise<unknown> {
  const target = ctx.entities.get(object);
  const args = prepareArgs(rawArgs, ctx);
  if (target instanceof MongoClient) return clientOperation(name, target, args, ctx);
  if (isCursorEntity(target)) return cursorOperation(name, target, ctx);
  const t = target as Document;
  if (typeof t?.insertOne === 'function' && typeof t?.collectionName === 'string')
    return collectionOperation(name, target as Collection, args, ctx);
  if (typeof t?.collection === 'function' && typeof t?.databaseName === 'string')
    return databaseOperation(name, target as Db, args, ctx);
  if (typeof t?.endSession === 'function') return sessionOperation(name, target as ClientSession);
  throw new UnsupportedCase(`operations on entity ${object} are not mapped by this runner`);
}
