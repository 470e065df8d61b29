/**
 * Reads a MongoDB collection that is not jobd's: a find or an aggregation against a URI from the
 * settings (tabular.sources.<name>), in batches by cursor, each document as relaxed Extended JSON.
 *
 * This is the one file outside src/store that imports the driver (eslint.config.js lists it). The
 * store boundary keeps jobd's own collections behind guarded functions; a database_ingestion job reads
 * a user's database, with its own client and credentials, and must never reach jobd's store. It takes a
 * URI and a query and gives back text: no jobd types, no store, nothing shared with the daemon's client.
 */
import { BSON, MongoClient, type Document } from 'mongodb';

const { EJSON } = BSON;

export interface MongoReadOptions {
  uri: string;
  database: string;
  collection: string;
  /** Extended JSON (e.g. {"$oid": "..."}, {"$date": "..."}), as a job's params carry it. */
  filter?: Document | undefined;
  projection?: Document | undefined;
  sort?: Document | undefined;
  limit?: number | undefined;
  pipeline?: Document[] | undefined;
  batchSize: number;
  signal: AbortSignal;
  appName: string;
}

/** Params (plain JSON) to BSON values: {"$oid": ...} becomes an ObjectId, {"$date": ...} a Date. */
function fromEjson<T>(value: T | undefined): T | undefined {
  return value === undefined ? undefined : (EJSON.deserialize(value as Document, { relaxed: true }) as T);
}

/**
 * Yields batches of documents as relaxed Extended JSON lines (no newline): dates as {"$date": ISO},
 * ObjectIds as {"$oid": hex}, 64-bit integers and doubles as plain numbers where JSON holds them,
 * Decimal128 as {"$numberDecimal": text}, binary as {"$binary": ...}.
 */
export async function* readMongo(o: MongoReadOptions): AsyncGenerator<string[]> {
  const client = new MongoClient(o.uri, { appName: o.appName, serverSelectionTimeoutMS: 30_000 });
  const stop = (): void => void client.close(true);
  o.signal.addEventListener('abort', stop, { once: true });
  try {
    await client.connect();
    const coll = client.db(o.database).collection(o.collection);
    const cursor = o.pipeline
      ? coll.aggregate(fromEjson(o.pipeline)!, { batchSize: o.batchSize })
      : coll.find(fromEjson(o.filter) ?? {}, {
          batchSize: o.batchSize,
          ...(o.projection ? { projection: fromEjson(o.projection) } : {}),
          ...(o.sort ? { sort: fromEjson(o.sort) } : {}),
          ...(o.limit !== undefined ? { limit: o.limit } : {}),
        });
    let batch: string[] = [];
    for await (const doc of cursor) {
      batch.push(EJSON.stringify(doc, { relaxed: true }));
      // The driver fetches by batchSize; the rest of a batch it already holds comes without waiting.
      if (batch.length >= o.batchSize || cursor.bufferedCount() === 0) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length) yield batch;
  } finally {
    o.signal.removeEventListener('abort', stop);
    await client.close();
  }
}
