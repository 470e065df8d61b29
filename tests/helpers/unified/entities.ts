/**
 * The entity map of one test: clients, databases, collections, sessions and saved results, built from
 * a file's createEntities. MongoClients are pooled across tests by their options (connecting per case
 * would dominate the run time); everything else is created afresh for each test.
 */
import {
  MongoClient,
  ReadPreference,
  type ReadPreferenceMode,
  type ClientSession,
  type Collection,
  type Db,
  type Document,
  type MongoClientOptions,
  type ReadConcernLike,
  type WriteConcernSettings,
} from 'mongodb';
import type { EntityDescription } from './types.js';
import type { EntityLookup } from './match.js';

export class UnsupportedCase extends Error {
  override name = 'UnsupportedCase';
}

export function readPreferenceFrom(spec: Document): ReadPreference {
  const { mode, tagSets, maxStalenessSeconds, hedge } = spec;
  const options: Document = {};
  if (maxStalenessSeconds !== undefined) options.maxStalenessSeconds = maxStalenessSeconds;
  if (hedge !== undefined) options.hedge = hedge;
  return new ReadPreference(String(mode) as ReadPreferenceMode, tagSets as never, options);
}

/** readConcern/readPreference/writeConcern given as test-file documents, as driver options. */
export function commonOptions(spec: Document | undefined): Document {
  const out: Document = {};
  if (!spec) return out;
  for (const [key, value] of Object.entries(spec)) {
    if (key === 'readPreference') out.readPreference = readPreferenceFrom(value as Document);
    else if (key === 'readConcern') out.readConcern = value as ReadConcernLike;
    else if (key === 'writeConcern') out.writeConcern = value as WriteConcernSettings;
    else if (key === 'timeoutMS') out.timeoutMS = value;
    else throw new UnsupportedCase(`unsupported entity option ${key}`);
  }
  return out;
}

export class ClientPool {
  private readonly clients = new Map<string, MongoClient>();

  constructor(private readonly uri: string) {}

  async get(uriOptions: Document | undefined): Promise<MongoClient> {
    const key = JSON.stringify(uriOptions ?? {});
    let client = this.clients.get(key);
    if (!client) {
      const options: MongoClientOptions = {
        serverSelectionTimeoutMS: 10_000,
        ...(uriOptions as MongoClientOptions),
      };
      client = new MongoClient(this.uri, options);
      await client.connect();
      this.clients.set(key, client);
    }
    return client;
  }

  async closeAll(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.allSettled(all.map((c) => c.close()));
  }
}

/** A cursor-like entity whose first document may already have been fetched to open the server cursor. */
export interface CursorEntity {
  kind: 'cursor';
  buffered: Document[];
  next(): Promise<Document | null>;
  tryNext(): Promise<Document | null>;
  close(): Promise<void>;
}

export class EntityMap implements EntityLookup {
  private readonly map = new Map<string, unknown>();
  private readonly sessions: ClientSession[] = [];
  private readonly cursors: CursorEntity[] = [];

  set(name: string, value: unknown): void {
    if (this.map.has(name)) throw new Error(`entity ${name} already exists`);
    this.map.set(name, value);
    if (isCursorEntity(value)) this.cursors.push(value);
  }

  has(name: string): boolean {
    return this.map.has(name);
  }

  get(name: string): unknown {
    if (!this.map.has(name)) throw new Error(`entity ${name} is not defined`);
    return this.map.get(name);
  }

  client(name: string): MongoClient {
    const v = this.get(name);
    if (!(v instanceof MongoClient)) throw new Error(`entity ${name} is not a client`);
    return v;
  }

  db(name: string): Db {
    const v = this.get(name) as Db;
    if (typeof v?.collection !== 'function' || typeof v?.databaseName !== 'string')
      throw new Error(`entity ${name} is not a database`);
    return v;
  }

  collection(name: string): Collection {
    const v = this.get(name) as Collection;
    if (typeof v?.collectionName !== 'string' || typeof v?.insertOne !== 'function')
      throw new Error(`entity ${name} is not a collection`);
    return v;
  }

  session(name: string): ClientSession {
    const v = this.get(name) as ClientSession;
    if (typeof v?.endSession !== 'function') throw new Error(`entity ${name} is not a session`);
    return v;
  }

  async create(
    descriptions: EntityDescription[],
    pool: ClientPool,
    mapDb: (name: string) => string,
  ): Promise<void> {
    for (const description of descriptions) {
      const [kind, spec] = Object.entries(description)[0] as [
        keyof EntityDescription,
        Document & { id: string },
      ];
      switch (kind) {
        case 'client': {
          // observeEvents, ignoreCommandMonitoringEvents and observeSensitiveCommands only matter for
          // expectEvents, which this runner does not check. useMultipleMongoses is moot on one server.
          if (spec.serverApi) throw new UnsupportedCase('client serverApi is not supported by this runner');
          if (spec.storeEventsAsEntities || spec.observeLogMessages)
            throw new UnsupportedCase('event/log entities are not supported by this runner');
          this.set(spec.id, await pool.get(spec.uriOptions as Document | undefined));
          break;
        }
        case 'database': {
          const client = this.client(spec.client as string);
          this.set(
            spec.id,
            client.db(
              mapDb(spec.databaseName as string),
              commonOptions(spec.databaseOptions as Document | undefined),
            ),
          );
          break;
        }
        case 'collection': {
          const db = this.db(spec.database as string);
          this.set(
            spec.id,
            db.collection(
              spec.collectionName as string,
              commonOptions(spec.collectionOptions as Document | undefined),
            ),
          );
          break;
        }
        case 'session': {
          const client = this.client(spec.client as string);
          const session = client.startSession((spec.sessionOptions as Document | undefined) ?? {});
          this.sessions.push(session);
          this.set(spec.id, session);
          break;
        }
        default:
          throw new UnsupportedCase(`entity type ${String(kind)} is not supported by this runner`);
      }
    }
  }

  /** Ends sessions and closes cursors; pooled clients stay open for the next test. */
  async dispose(): Promise<void> {
    await Promise.allSettled(this.cursors.map((c) => c.close()));
    await Promise.allSettled(this.sessions.map((s) => s.endSession()));
    this.map.clear();
  }
}

export function isCursorEntity(value: unknown): value is CursorEntity {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'cursor';
}
