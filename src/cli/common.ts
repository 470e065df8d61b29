/** What jobd and jobctl share: version, the error → exit code mapping, option parsers. */
import { InvalidArgumentError, type Command } from 'commander';
import { EXIT_CODES } from '../errors.js';

export { jobdVersion } from '../version.js';

/** Exit code for anything thrown; matched by name/code (errors may come from other module copies). */
export function exitCodeFor(err: unknown): number {
  const e = err as { name?: string; code?: unknown } | null;
  switch (e?.name) {
    case 'ConfigError':
    case 'ValidationError':
      return EXIT_CODES.config;
    case 'NotFoundError':
      return EXIT_CODES.notFound;
    case 'AlreadyRunningError':
      return EXIT_CODES.alreadyRunning;
  }
  if (e?.code === 'JOBD_CONFIG' || e?.code === 'JOBD_VALIDATION') return EXIT_CODES.config;
  if (e?.code === 'JOBD_NOT_FOUND') return EXIT_CODES.notFound;
  if (e?.code === 'JOBD_ALREADY_RUNNING') return EXIT_CODES.alreadyRunning;
  return EXIT_CODES.failure;
}

/** Commander errors: help and --version exit 0; every usage mistake exits 2. */
export function isCommanderError(err: unknown): err is { code: string; exitCode: number; message: string } {
  const e = err as { code?: unknown } | null;
  return typeof e?.code === 'string' && e.code.startsWith('commander.');
}

export function commanderExitCode(err: { code: string; exitCode: number }): number {
  if (
    err.code === 'commander.helpDisplayed' ||
    err.code === 'commander.version' ||
    err.code === 'commander.help'
  )
    return 0;
  return err.exitCode === 0 ? 0 : EXIT_CODES.config;
}

/**
 * Route commander's usage errors through exitOverride on the program and all its subcommands, and give
 * them the program's output settings (addCommand does not pass them on; they redact credentials).
 */
export function throwOnUsageErrors(program: Command): void {
  program.exitOverride();
  for (const sub of program.commands) {
    sub.configureOutput(program.configureOutput());
    throwOnUsageErrors(sub);
  }
}

export function intOption(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value.trim());
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`must be an integer from ${min} to ${max}.`);
    }
    return n;
  };
}

export function isoDateOption(value: string): Date {
  const d = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(d.getTime())) {
    throw new InvalidArgumentError('must be an ISO 8601 date and time, e.g. 2026-01-31T12:00:00Z.');
  }
  return d;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The settings variables both programs read, for --help (every key is in docs/configuration.md). */
export const ENVIRONMENT_HELP = `Environment:
  JOBD_SETTINGS      the settings file, when --settings is not given
  JOBD_MONGO_URI     mongoUri: "embedded" or a mongodb:// / mongodb+srv:// URI
  JOBD_DATABASE      database
  JOBD_<KEY>         any other setting, "__" between levels: worker.leaseMs is JOBD_WORKER__LEASE_MS,
                     embedded.port is JOBD_EMBEDDED__PORT (all keys: docs/configuration.md)
  STATE_DIRECTORY    the default dataDir (systemd's StateDirectory=)

Settings layers, later wins: defaults, the settings file, JOBD_* variables, flags.`;

/** jobctl's exit codes, for --help. */
export const JOBCTL_EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  failure: the database is unreachable, a change was refused (e.g. cancelling a finished job),
     or with enqueue --wait the job failed or was cancelled
  2  bad settings, flags or arguments (nothing was changed)
  3  no job with that id`;

/** The exit codes of a command that looks up one job. */
export const JOB_LOOKUP_EXIT_CODES_HELP =
  '\nExit codes: 0 ok; 1 failure; 2 bad settings, flags or arguments; 3 no job with that id.';

/** jobd's exit codes, for --help. */
export const JOBD_EXIT_CODES_HELP = `Exit codes:
  0  stopped cleanly after SIGTERM or SIGINT
  1  a fatal runtime error
  2  bad settings or flags
  4  another live jobd owns the pidfile

Signals: SIGTERM or SIGINT lets running jobs finish (worker.shutdownGraceMs), then stops; a second
signal kills and re-queues them at once.`;
