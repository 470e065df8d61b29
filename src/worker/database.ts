/**
 * The daemon's database: with mongoUri 'embedded' it starts jobd's embedded server in-process on
 * config.embedded.{host,port,dataDir} and connects to it; otherwise it connects to the given URI.
 * The initial connection is retried with backoff until startupTimeoutMs passes.
 */
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/types.js';
import { startEmbeddedServer, type EmbeddedServer } from '../embeddedLoader.js';
import { openStore, redactMongoUri, type Store } from '../store/index.js';
import { Backoff } from './wakeup.js';

/** A compaction that went as planned is routine; anything else the embedded server says is worth a warning. */
const ROUTINE = /^jobd-embedded: compacted /;

export async function startEmbedded(config: ResolvedConfig, logger: Logger): Promise<EmbeddedServer> {
  const server = await startEmbeddedServer({
    host: config.embedded.host,
    port: config.embedded.port,
    dataDir: config.embedded.dataDir,
    repair: config.embedded.repair,
    // Repairs, dropped torn tails, lock takeovers and failed writes or compactions must reach the log.
    log: (message) =>
      ROUTINE.test(message)
        ? logger.debug({ dataDir: config.embedded.dataDir }, message)
        : logger.warn({ dataDir: config.embedded.dataDir }, message),
  });
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
      const message = redactMongoUri(err instanceof Error ? err.message : String(err));
      if (Date.now() >= deadline)
        throw new Error(`database unreachable at start: ${message}`, { cause: err });
      logger.warn({ uri: redactMongoUri(uri), message }, 'database unreachable at start; retrying');
      await new Promise((r) => setTimeout(r, backoff.next()));
    }
  }
}
