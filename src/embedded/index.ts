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
  log?: (msg: string) => void;
}

export interface EmbeddedServer {
  readonly host: string;
  readonly port: number;
  /** mongodb://HOST:PORT/?directConnection=true */
  readonly uri: string;
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
        log,
        ...(opts.compactThresholdBytes !== undefined ? { compactMinBytes: opts.compactThresholdBytes } : {}),
      })
    : undefined;
  const engine = new Engine(store);
  if (store) {
    try {
      const loaded = store.load();
      engine.restore(loaded.snapshot, loaded.records);
      if (loaded.droppedTornTail) log(`jobd-embedded: dropped a torn tail of the log in ${store.dir} (an interrupted write)`);
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
    close() {
      closed ??= (async () => {
        ttl.stop();
        cursors.closeAll();
        await server.close();
        if (store) {
          try {
            store.compact(engine.snapshot());
          } finally {
            store.close();
          }
        }
      })();
      return closed;
    },
  };
}
