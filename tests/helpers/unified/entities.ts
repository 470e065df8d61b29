/**
 * The entity map of one test: clients, databases, collections, sessions and saved results, built from
 * a file's createEntities. Everything is created afresh for each test, clients included: a client
 * carries the test's command monitoring, and closing it at the end of the test ends whatever it still
 * had in flight (an abandoned change stream iteration cannot deliver into the next test).
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
import { EventRecorder } from './events.js';
import type { DbNames } from './dbNames.js';

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
  private readonly clients: MongoClient[] = [];
  /** Command monitoring of each client entity that observes events, by entity id. */
  readonly recorders = new Map<string, EventRecorder>();

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

  async create(descriptions: EntityDescription[], uri: string, names: DbNames): Promise<void> {
    for (const description of descriptions) {
      const [kind, spec] = Object.entries(description)[0] as [
        keyof EntityDescription,
        Document & { id: string },
      ];
      switch (kind) {
        case 'client': {
          // useMultipleMongoses is moot on one server.
          if (spec.storeEventsAsEntities || spec.observeLogMessages || spec.observeTracingMessages)
            throw new UnsupportedCase('event/log entities are not supported by this runner');
          if (spec.autoEncryptOpts) throw new UnsupportedCase('client-side encryption is not supported');
          const options: MongoClientOptions = {
            serverSelectionTimeoutMS: 10_000,
            ...(uriOptionsOf(spec.uriOptions as Document | undefined) as MongoClientOptions),
          };
          if (spec.serverApi) options.serverApi = spec.serverApi as MongoClientOptions['serverApi'];
          const observes = Array.isArray(spec.observeEvents) && spec.observeEvents.length > 0;
          if (observes) options.monitorCommands = true;
          const client = new MongoClient(uri, options);
          this.clients.push(client);
          if (observes) this.recorders.set(spec.id, new EventRecorder(client, spec));
          await client.connect();
          this.set(spec.id, client);
          break;
        }
        case 'database': {
          const client = this.client(spec.client as string);
          this.set(
            spec.id,
            client.db(
              names.map(spec.databaseName as string),
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

  /** Stops recording command events (before the test's own clean-up sends commands). */
  stopRecording(): void {
    for (const r of this.recorders.values()) r.stop();
  }

  /** Closes cursors, ends sessions and closes the test's clients. */
  async dispose(): Promise<void> {
    this.stopRecording();
    await Promise.allSettled(this.cursors.map((c) => c.close()));
    await Promise.allSettled(this.sessions.map((s) => s.endSession()));
    await Promise.allSettled(this.clients.map((c) => c.close()));
    this.map.clear();
  }
}

/** uriOptions as driver options; readPreferenceTags arrive as an array of tag-set strings. */
function uriOptionsOf(uriOptions: Document | undefined): Document {
  if (!uriOptions) return {};
  const out: Document = { ...uriOptions };
  if (Array.isArray(out.readPreferenceTags)) {
    out.readPreferenceTags = (out.readPreferenceTags as string[]).map((t) =>
      Object.fromEntries(
        t
          .split(',')
          .filter(Boolean)
          .map((kv) => kv.split(':')),
      ),
    );
  }
  return out;
}

export function isCursorEntity(value: unknown): value is CursorEntity {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'cursor';
}
