/**
 * jobd: the daemon's entry. Settings → logger → pidfile → (embedded server) → daemon.
 * SIGTERM/SIGINT drain gracefully (worker.shutdownGraceMs); a second signal stops at once.
 * Exit codes: 0 clean stop, 1 fatal error, 2 bad settings or flags, 4 another jobd owns the pidfile.
 */
import { Command, Option } from 'commander';
import { hostname } from 'node:os';
import { loadConfig } from '../config/load.js';
import type { ResolvedConfig } from '../config/types.js';
import { EXIT_CODES } from '../errors.js';
import { createLogger, redactUri, type Logger } from '../logging.js';
import { embeddedUri } from '../store/connect.js';
import { applyHeapGrowth } from '../worker/heapGrowth.js';
import { startDaemon, type Daemon } from '../worker/daemon.js';
import { prepareDaemonDirs } from '../worker/dirs.js';
import { acquirePidfile, type Pidfile } from '../worker/pidfile.js';
import {
  commanderExitCode,
  ENVIRONMENT_HELP,
  errorMessage,
  exitCodeFor,
  isCommanderError,
  JOBD_EXIT_CODES_HELP,
  jobdVersion,
} from './common.js';

/** After a second signal: killGraceMs for the children, plus this for writing outcomes and closing. */
const HARD_STOP_MARGIN_MS = 15_000;

interface JobdFlags {
  settings?: string;
  logLevel?: string;
  concurrency?: string;
  mongoUri?: string;
}

function buildProgram(): Command {
  return new Command('jobd')
    .description('jobd: runs jobs from MongoDB')
    .addOption(new Option('--settings <file>', 'settings file (JSON); default $JOBD_SETTINGS'))
    .addOption(new Option('--log-level <level>', 'trace, debug, info, warn, error, fatal or silent'))
    .addOption(new Option('--concurrency <n>', 'jobs running at once on this daemon'))
    .addOption(new Option('--mongo-uri <uri>', 'MongoDB URI, or "embedded" for the built-in server'))
    .version(jobdVersion(), '-V, --version', "print jobd's version")
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(redactUri(s)) })
    .addHelpText('after', `\n${ENVIRONMENT_HELP}\n\n${JOBD_EXIT_CODES_HELP}`)
    .exitOverride();
}

function fail(code: number, message: string, logger?: Logger): never {
  if (logger) logger.fatal({ exitCode: code }, message);
  process.stderr.write(`jobd: ${redactUri(message)}\n`);
  process.exit(code);
}

/** Connection string for the daemon: the embedded server's loopback address when mongoUri is 'embedded'. */
function describeDatabase(config: ResolvedConfig): string {
  return redactUri(config.mongoUri === 'embedded' ? embeddedUri(config.embedded) : config.mongoUri);
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    program.parse(argv);
  } catch (err) {
    if (isCommanderError(err)) process.exit(commanderExitCode(err));
    throw err;
  }
  const flags = program.opts<JobdFlags>();

  let config: ResolvedConfig;
  try {
    config = loadConfig({
      ...(flags.settings !== undefined ? { settingsPath: flags.settings } : {}),
      flags: {
        ...(flags.logLevel !== undefined ? { logLevel: flags.logLevel } : {}),
        ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}),
        ...(flags.mongoUri !== undefined ? { mongoUri: flags.mongoUri } : {}),
      },
    });
  } catch (err) {
    fail(exitCodeFor(err) === EXIT_CODES.config ? EXIT_CODES.config : EXIT_CODES.failure, errorMessage(err));
  }

  // Before anything of size is allocated: the daemon's heap stays near its live size (heapGrowth.ts).
  applyHeapGrowth(config.worker.heapGrowthPercent);
  const logger = createLogger({ level: config.logLevel, name: 'jobd' });

  try {
    prepareDaemonDirs(config);
  } catch (err) {
    fail(exitCodeFor(err), errorMessage(err), logger);
  }

  let pidfile: Pidfile;
  try {
    pidfile = acquirePidfile(config.pidFile, { logger });
  } catch (err) {
    fail(exitCodeFor(err), errorMessage(err), logger);
  }
  process.on('exit', () => pidfile.release());

  let stopping: Promise<void> | null = null;
  let forced = false;
  const fatal = (err: unknown, what: string): void => {
    logger.fatal({ err }, `${what}: ${errorMessage(err)}`);
    pidfile.release();
    process.exit(EXIT_CODES.failure);
  };
  process.on('uncaughtException', (err) => fatal(err, 'jobd stopped on an unexpected error'));
  process.on('unhandledRejection', (err) => fatal(err, 'jobd stopped on an unhandled promise rejection'));

  let daemon: Daemon | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (!daemon) {
      // Still connecting: nothing runs yet, so there is nothing to drain.
      logger.info({ signal }, 'signal during start-up: exiting');
      pidfile.release();
      process.exit(EXIT_CODES.ok);
    }
    if (stopping) {
      if (forced) {
        logger.fatal(
          { signal },
          'third signal: exiting without waiting for running jobs (the rescuer recovers them)',
        );
        pidfile.release();
        process.exit(EXIT_CODES.failure);
      }
      forced = true;
      logger.warn({ signal }, 'second signal: stopping now; running jobs are killed and re-queued');
      void daemon.stop({ graceMs: 0 });
      // If the drain still hangs (a child that ignores SIGKILL, a settle that cannot reach the database),
      // do not wait forever: the rescuer recovers whatever is left.
      const deadline = config.worker.killGraceMs + HARD_STOP_MARGIN_MS;
      setTimeout(() => {
        logger.fatal({ waitedMs: deadline }, 'jobd did not stop in time after the second signal; exiting');
        pidfile.release();
        process.exit(EXIT_CODES.failure);
      }, deadline).unref();
      return;
    }
    logger.info(
      { signal, graceMs: config.worker.shutdownGraceMs },
      'stopping: no new jobs; running jobs may finish',
    );
    stopping = daemon
      .stop({ graceMs: config.worker.shutdownGraceMs })
      .then(() => {
        logger.info('jobd stopped');
        pidfile.release();
        process.exit(EXIT_CODES.ok);
      })
      .catch((err: unknown) => fatal(err, 'jobd failed while stopping'));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    daemon = await startDaemon({ config, logger });
  } catch (err) {
    const code = exitCodeFor(err);
    pidfile.release();
    // A misconfiguration is told plainly (no stack trace); anything else keeps its details in the log.
    if (code === EXIT_CODES.config) fail(code, `jobd could not start: ${errorMessage(err)}`, logger);
    logger.fatal({ err }, `jobd could not start: ${errorMessage(err)}`);
    process.exit(code);
  }

  logger.info(
    {
      version: jobdVersion(),
      workerId: daemon.workerId,
      host: hostname(),
      database: config.database,
      uri: describeDatabase(config),
      concurrency: config.worker.concurrency,
      pidFile: config.pidFile,
    },
    'jobd started',
  );
}
