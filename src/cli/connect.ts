/**
 * jobctl's way to the database. With mongoUri 'embedded' it talks to the daemon's embedded server on
 * embedded.host:port; when nothing listens there (jobd is not running) it starts the embedded server
 * in this process on the configured data directory, so jobctl works with or without a daemon.
 */
import { connect as netConnect } from 'node:net';
import type { ResolvedConfig } from '../config/types.js';
import { JobdError } from '../errors.js';
import { startEmbeddedServer } from '../embeddedLoader.js';
import { redactUri } from '../logging.js';
import { embeddedUri, openStore } from '../store/connect.js';
import type { Store } from '../store/types.js';

export type Backend = 'mongodb' | 'embedded (daemon)' | 'embedded (in-process)';

export interface Connection {
  store: Store;
  backend: Backend;
  /** Redacted: safe to print. */
  uri: string;
  close(): Promise<void>;
}

/** Is something accepting TCP connections at host:port? */
export function isListening(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const done = (result: boolean): void => {
      socket.removeAllListeners();
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(true)); // something is there but slow: let the driver judge
    socket.once('connect', () => done(true));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'ECONNREFUSED'));
  });
}

export async function connectStore(
  config: ResolvedConfig,
  opts: { ensureIndexes?: boolean } = {},
): Promise<Connection> {
  let stopEmbedded: (() => Promise<void>) | undefined;
  let backend: Backend = 'mongodb';
  let uri = config.mongoUri;
  if (config.mongoUri === 'embedded') {
    const { host, port, dataDir, repair } = config.embedded;
    uri = embeddedUri(config.embedded);
    backend = 'embedded (daemon)';
    if (!(await isListening(host, port))) {
      try {
        const server = await startEmbeddedServer({
          host,
          port,
          dataDir,
          repair,
          // What start-up did to the folder (a repair, a dropped torn tail) is told; routine compactions are not.
          log: (message) => {
            if (!message.startsWith('jobd-embedded: compacted ')) process.stderr.write(`${message}\n`);
          },
        });
        stopEmbedded = () => server.close();
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        // Only a held lock means another process; a damaged folder says what to do itself.
        const locked = (err as { code?: unknown }).code === 'EMBEDDED_DATA_DIR_LOCKED';
        throw new JobdError(
          `nothing listens on ${host}:${port} and the embedded database could not be opened in ${dataDir ?? '(memory)'}: ${why}` +
            (locked
              ? ' (is another jobd or jobctl holding that folder? wait for it to stop, or set mongoUri)'
              : ''),
          'JOBD_EMBEDDED_UNAVAILABLE',
          { cause: err },
        );
      }
      backend = 'embedded (in-process)';
    }
  }
  let store: Store;
  try {
    store = await openStore({
      mongoUri: uri,
      database: config.database,
      appName: 'jobctl',
      serverSelectionTimeoutMS: 5_000,
      ensureIndexes: opts.ensureIndexes ?? false,
    });
  } catch (err) {
    await stopEmbedded?.().catch(() => {});
    throw err;
  }
  return {
    store,
    backend,
    uri: redactUri(uri),
    async close() {
      try {
        await store.close();
      } finally {
        await stopEmbedded?.();
      }
    },
  };
}
