import { redactUri } from '../logging.js';
import { MongoClient } from 'mongodb';
import { ConfigError } from '../errors.js';
import { fatalConnectProblem } from './dbErrors.js';
import type { JobEventDoc, ScheduleDoc, WorkerDoc, WorkflowDoc } from '../types.js';
import { ensureIndexes } from './indexes.js';
import type { LogChunkDoc, Store, StoredJob } from './types.js';

export interface OpenStoreOptions {
  /** A mongodb:// or mongodb+srv:// URI ('embedded' must be resolved first, see resolveMongoUri). */
  mongoUri: string;
  database: string;
  /** Shown in the server's logs and currentOp. */
  appName?: string;
  /** How long an operation waits for a reachable server before it fails (the daemon keeps it short). */
  serverSelectionTimeoutMS?: number;
  /** Create jobd's indexes (idempotent). Default true. */
  ensureIndexes?: boolean;
  /** Emit commandStarted/commandSucceeded on store.client (benchmarks count commands). */
  monitorCommands?: boolean;
}

/** The URI of jobd's embedded server as the driver reaches it. */
export function embeddedUri(embedded: { host: string; port: number }): string {
  const host = embedded.host.includes(':') ? `[${embedded.host}]` : embedded.host;
  return `mongodb://${host}:${embedded.port}/?directConnection=true`;
}

/** 'embedded' → the embedded server's URI; anything else unchanged. */
export function resolveMongoUri(cfg: {
  mongoUri: string;
  embedded?: { host: string; port: number };
}): string {
  if (cfg.mongoUri !== 'embedded') return cfg.mongoUri;
  if (!cfg.embedded) throw new Error('mongoUri is "embedded" but no embedded host/port was given');
  return embeddedUri(cfg.embedded);
}

/** Hide credentials before a URI reaches a log line or an error message (one rule for all of jobd). */
export const redactMongoUri = redactUri;

/**
 * Why the connection failed, safe to print. A misconfiguration no retry cures (refused credentials,
 * a connection string or option the driver refuses) is a ConfigError; anything else may pass.
 */
function connectError(uri: string, err: unknown): Error {
  // The driver's message may echo the URI; never let credentials through.
  const msg = redactMongoUri(err instanceof Error ? err.message : String(err));
  const fatal = fatalConnectProblem(err);
  // No cause attached to the ConfigError: the driver's error may carry the URI in other fields.
  if (fatal) return new ConfigError(`${fatal}: ${msg} (mongoUri ${redactMongoUri(uri)})`);
  return new Error(`cannot connect to MongoDB at ${redactMongoUri(uri)}: ${msg}`, { cause: err });
}

export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  let client: MongoClient;
  try {
    client = new MongoClient(opts.mongoUri, {
      appName: opts.appName ?? 'jobd',
      serverSelectionTimeoutMS: opts.serverSelectionTimeoutMS ?? 10_000,
      monitorCommands: opts.monitorCommands ?? false,
      // Writes to jobs must be acknowledged: they are the coordination between daemons.
      writeConcern: { w: 'majority' },
      retryWrites: true,
    });
  } catch (err) {
    throw connectError(opts.mongoUri, err);
  }
  try {
    await client.connect();
  } catch (err) {
    await client.close().catch(() => {});
    throw connectError(opts.mongoUri, err);
  }
  const db = client.db(opts.database);
  const store: Store = {
    client,
    db,
    jobs: db.collection<StoredJob>('jobs'),
    events: db.collection<JobEventDoc>('job_events'),
    workers: db.collection<WorkerDoc>('workers'),
    schedules: db.collection<ScheduleDoc>('schedules'),
    workflows: db.collection<WorkflowDoc>('workflows'),
    logs: db.collection<LogChunkDoc>('job_logs'),
    close: () => client.close(),
  };
  if (opts.ensureIndexes !== false) {
    try {
      await ensureIndexes(store);
    } catch (err) {
      await client.close().catch(() => {});
      // Connected but not allowed to work here (e.g. a user without rights on the database).
      throw fatalConnectProblem(err) ? connectError(opts.mongoUri, err) : err;
    }
  }
  return store;
}

/** A cheap round trip that proves the database answers. */
export async function ping(store: Store): Promise<number> {
  const t0 = performance.now();
  await store.db.command({ ping: 1 });
  return performance.now() - t0;
}
