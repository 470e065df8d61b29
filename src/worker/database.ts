/**
 * The daemon's database: with mongoUri 'embedded' it starts jobd's embedded server in-process on
 * config.embedded.{host,port,dataDir} and connects to it; otherwise it connects to the given URI.
 * The initial connection is retried with backoff until startupTimeoutMs passes.
 */
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/types.js';
import { ConfigError } from '../errors.js';
import { startEmbeddedServer, type EmbeddedServer } from '../embeddedLoader.js';
import { openStore, redactMongoUri, type Store } from '../store/index.js';
import { Backoff } from './wakeup.js';

/** A compaction that went as planned is routine; anything else the embedded server says is worth a warning. */
const ROUTINE = /^jobd-embedded: compacted /;

export async function startEmbedded(config: ResolvedConfig, logger: Logger): Promise<EmbeddedServer> {
  const { host, port } = config.embedded;
  let server: EmbeddedServer;
  try {
    server = await startEmbeddedServer({
      host,
      port,
      dataDir: config.embedded.dataDir,
      repair: config.embedded.repair,
      // Repairs, dropped torn tails, lock takeovers and failed writes or compactions must reach the log.
      log: (message) =>
        ROUTINE.test(message)
          ? logger.debug({ dataDir: config.embedded.dataDir }, message)
          : logger.warn({ dataDir: config.embedded.dataDir }, message),
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    if (code === 'EADDRINUSE')
      throw new ConfigError(
        `embedded.port ${port} on ${host} is already in use by another process: stop it, or set embedded.port to a free port`,
      );
    if (code === 'EACCES')
      throw new ConfigError(
        `embedded.port ${port} on ${host}: not permitted to listen there; choose a port above 1023`,
      );
    if (code === 'EADDRNOTAVAIL')
      throw new ConfigError(`embedded.host ${host} is not an address of this machine`);
    throw err;
  }
  logger.info(
    { uri: server.uri, dataDir: config.embedded.dataDir ?? '(memory)' },
    'embedded database started',
  );
  return server;
}

export async function connectDaemonStore(
  uri: string,
  config: ResolvedConfig,
  logger: Logger,
  opts: { appName: string; startupTimeoutMs: number; monitorCommands?: boolean },
): Promise<Store> {
  const deadline = Date.now() + opts.startupTimeoutMs;
  const backoff = new Backoff(200, 5_000);
  for (;;) {
    try {
      return await openStore({
        mongoUri: uri,
        database: config.database,
        appName: opts.appName,
        // Short, so loops notice a lost database quickly and back off; the driver reconnects by itself.
        serverSelectionTimeoutMS: 5_000,
        monitorCommands: opts.monitorCommands ?? false,
      });
    } catch (err) {
      // A misconfiguration (refused credentials, a bad connection string) is not an outage.
      if ((err as Error)?.name === 'ConfigError') throw err;
      const message = redactMongoUri(err instanceof Error ? err.message : String(err));
      if (Date.now() >= deadline)
        throw new Error(`database unreachable at start: ${message}`, { cause: err });
      logger.warn({ uri: redactMongoUri(uri), message }, 'database unreachable at start; retrying');
      await new Promise((r) => setTimeout(r, backoff.next()));
    }
  }
}
