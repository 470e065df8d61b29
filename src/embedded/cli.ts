/**
 * The standalone embedded server: `jobd-embedded --port P [--host H] [--data-dir D] [--fsync always|never] [--repair]`.
 * Prints one "listening" line when ready. On SIGTERM or SIGINT it stops accepting connections, answers
 * the requests it has received, compacts the data directory, releases its lock and exits 0, or 1 when a
 * write could not be logged during its run (it then refused writes and kept serving reads until stopped).
 *
 * Exit codes: 0 clean stop; 1 runtime failure; 2 bad flags; 4 the data directory is locked by another
 * live process; 5 the data directory is damaged and --repair was not given (nothing was changed).
 */
import { startServer, type InternalServerOptions } from './index.js';

const USAGE =
  'usage: jobd-embedded [--port P] [--host H] [--data-dir D] [--fsync always|never] [--repair] [--ttl-interval-ms MS] [--compact-threshold-bytes N]\n' +
  '  --repair   if a file in the data directory is damaged, start with everything before the damage\n' +
  '             and keep the whole damaged file beside it as <name>.damaged-<time>\n' +
  'exit codes: 0 stopped cleanly, 1 failure, 2 bad flags, 4 data directory locked by a live process,\n' +
  '            5 data directory damaged (start again with --repair to keep what is before the damage)';

export const EXIT_CODES = { ok: 0, failure: 1, usage: 2, locked: 4, damaged: 5 } as const;

function parseArgs(args: string[]): InternalServerOptions {
  const opts: InternalServerOptions = { port: 27017 };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i] as string;
    const [name, inline] = flag.includes('=')
      ? (flag.split(/=(.*)/s, 2) as [string, string])
      : [flag, undefined];
    const value = (): string => {
      const v = inline ?? args[++i];
      if (v === undefined) throw new Error(`${name} needs a value`);
      return v;
    };
    const int = (what: string): number => {
      const v = value();
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0)
        throw new Error(`${what} must be a non-negative integer, got '${v}'`);
      return n;
    };
    switch (name) {
      case '--port':
        opts.port = int('--port');
        if ((opts.port ?? 0) > 65535) throw new Error(`--port must be at most 65535, got ${opts.port}`);
        break;
      case '--host':
        opts.host = value();
        break;
      case '--data-dir':
        opts.dataDir = value();
        break;
      case '--fsync': {
        const v = value();
        if (v !== 'always' && v !== 'never')
          throw new Error(`--fsync must be 'always' or 'never', got '${v}'`);
        opts.fsync = v;
        break;
      }
      case '--repair':
        if (inline !== undefined) throw new Error(`--repair takes no value, got '${inline}'`);
        opts.repair = true;
        break;
      case '--ttl-interval-ms':
        opts.ttlIntervalMs = int('--ttl-interval-ms');
        break;
      case '--compact-threshold-bytes':
        opts.compactThresholdBytes = int('--compact-threshold-bytes');
        break;
      case '--help':
      case '-h':
        console.log(USAGE);
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option '${flag}'`);
    }
  }
  return opts;
}

export async function main(argv: string[]): Promise<void> {
  let opts: InternalServerOptions;
  try {
    opts = parseArgs(argv.slice(2));
  } catch (err) {
    console.error(`jobd-embedded: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exitCode = EXIT_CODES.usage;
    return;
  }
  let server;
  try {
    server = await startServer({ ...opts, log: (msg) => console.error(msg) });
  } catch (err) {
    console.error(`jobd-embedded: cannot start: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = startFailureCode(err);
    return;
  }
  console.log(
    `jobd-embedded listening on ${server.uri}${opts.dataDir ? ` (data directory ${opts.dataDir})` : ' (in memory)'}`,
  );
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    console.error(`jobd-embedded: ${signal} received, closing`);
    server.close().then(
      () => {
        const failure = server.writeFailure;
        if (failure)
          console.error(`jobd-embedded: closed; writes had been refused since: ${failure.message}`);
        process.exit(failure ? EXIT_CODES.failure : EXIT_CODES.ok);
      },
      (err: unknown) => {
        console.error(
          `jobd-embedded: error while closing: ${err instanceof Error ? err.message : String(err)}`,
        );
        process.exit(EXIT_CODES.failure);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function startFailureCode(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'EMBEDDED_DATA_DIR_LOCKED') return EXIT_CODES.locked;
  if (code === 'EMBEDDED_DATA_DIR_DAMAGED') return EXIT_CODES.damaged;
  return EXIT_CODES.failure;
}
