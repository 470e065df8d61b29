/**
 * jobd's embedded MongoDB-compatible server: the official driver talks to it over the wire.
 * In memory by default; durable in a data directory when one is given.
 */
import { CursorManager } from './cursor.js';
import { Engine } from './engine.js';
import { TtlMonitor } from './ttl.js';
import { WireServer } from './server.js';
import { openDurableStore } from './persistence.js';
import type { DurableStore } from './persistenceTypes.js';
import { RAW_NUMBER_OPTIONS } from './numbers.js';

export interface EmbeddedServerOptions {
  /** 0 = an ephemeral port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** null/undefined = in memory. */
  dataDir?: string | null;
  /** How often expired TTL documents are removed; default 60000. */
  ttlIntervalMs?: number;
  /**
   * With a data directory: 'never' (default) acknowledges a write once it is in the operating system's
   * page cache, which survives a crash of the process (SIGKILL included) but not of the machine;
   * 'always' also fdatasyncs each write before acknowledging it, so it survives power loss too, at the
   * cost of a disk flush per write.
   */
  fsync?: 'always' | 'never';
  /**
   * With a data directory: when a file in it is damaged, start with everything before the damage and
   * keep the whole damaged file beside it as `<name>.damaged-<time>`. Without it (the default) a damaged
   * data directory is refused with DataDirDamagedError, and nothing in it is changed.
   */
  repair?: boolean;
  log?: (msg: string) => void;
}

export interface EmbeddedServer {
  readonly host: string;
  readonly port: number;
  /** mongodb://HOST:PORT/?directConnection=true */
  readonly uri: string;
  /**
   * Set once a write could not be appended to the data directory's log: that command failed and was
   * not applied, and every later write is refused until a restart; reads continue.
   */
  readonly writeFailure: Error | undefined;
  /**
   * Stops accepting connections and requests, answers the requests already received, compacts the
   * data directory and releases its lock.
   */
  close(): Promise<void>;
}

/** Options only the standalone command exposes. */
export interface InternalServerOptions extends EmbeddedServerOptions {
  /** The durable log is compacted once it exceeds this many bytes (and twice the snapshot). */
  compactThresholdBytes?: number;
}

export function startEmbeddedServer(opts: EmbeddedServerOptions = {}): Promise<EmbeddedServer> {
  return startServer(opts);
}

export async function startServer(opts: InternalServerOptions = {}): Promise<EmbeddedServer> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? (() => {});
  const store: DurableStore | undefined = opts.dataDir
    ? openDurableStore(opts.dataDir, {
        bsonOptions: RAW_NUMBER_OPTIONS,
        log: (msg) => log(`jobd-embedded: ${msg}`),
        ...(opts.fsync !== undefined ? { fsync: opts.fsync } : {}),
        ...(opts.repair !== undefined ? { repair: opts.repair } : {}),
        ...(opts.compactThresholdBytes !== undefined ? { compactMinBytes: opts.compactThresholdBytes } : {}),
      })
    : undefined;
  const engine = new Engine(store, log);
  if (store) {
    try {
      // A dropped torn tail or a repair has been reported by the store, with the file and the bytes.
      const loaded = store.load();
      engine.restore(loaded.snapshot, loaded.records);
    } catch (err) {
      store.close();
      throw err;
    }
  }
  const cursors = new CursorManager();
  const info = { host, port: opts.port ?? 0, startedAt: new Date() };
  const server = new WireServer({ engine, cursors, info, log });
  let port: number;
  try {
    port = await server.listen(opts.port ?? 0, host);
  } catch (err) {
    store?.close();
    cursors.closeAll();
    throw err;
  }
  info.port = port;
  const ttl = new TtlMonitor(engine, opts.ttlIntervalMs ?? 60_000, log);
  ttl.start();
  const uriHost = host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;
  return {
    host,
    port,
    uri: `mongodb://${uriHost}:${port}/?directConnection=true`,
    get writeFailure() {
      return engine.writeFailure;
    },
    close() {
      closed ??= (async () => {
        ttl.stop();
        await server.close(() => {
          // Awaiting change streams answer now (an empty, final batch) instead of at their deadline.
          cursors.closeWaiting();
          engine.changes.wakeAll();
        });
        cursors.closeAll();
        if (store) {
          try {
            engine.finalCompaction();
          } finally {
            store.close();
          }
        }
      })();
      return closed;
    },
  };
}
