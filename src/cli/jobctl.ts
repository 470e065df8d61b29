/**
 * jobctl: the admin CLI. Same settings as jobd (--settings / JOBD_SETTINGS, JOBD_* variables, flags).
 * Exit codes (also in --help): 0 ok, 1 failure, 2 bad flags/arguments/settings, 3 job not found.
 */
import { Command } from 'commander';
import { EXIT_CODES } from '../errors.js';
import { redact } from '../redact.js';
import {
  commanderExitCode,
  ENVIRONMENT_HELP,
  errorMessage,
  exitCodeFor,
  isCommanderError,
  JOBCTL_EXIT_CODES_HELP,
  jobdVersion,
  throwOnUsageErrors,
} from './common.js';
import type { CliEnv, RegisterCommand } from './context.js';

/**
 * Each top-level command and the module that registers it, in the order --help lists them. A command's
 * module (and what it imports: the store, the driver, zod schemas...) is loaded only when it runs.
 */
const COMMANDS: [name: string, load: () => Promise<RegisterCommand>][] = [
  ['ping', async () => (await import('./commands/ping.js')).registerPing],
  ['version', async () => (await import('./commands/version.js')).registerVersion],
  ['status', async () => (await import('./commands/status.js')).registerStatus],
  ['list', async () => (await import('./commands/list.js')).registerList],
  ['show', async () => (await import('./commands/show.js')).registerShow],
  ['logs', async () => (await import('./commands/logs.js')).registerLogs],
  ['enqueue', async () => (await import('./commands/enqueue.js')).registerEnqueue],
  ['retry', async () => (await import('./commands/retry.js')).registerRetry],
  ['cancel', async () => (await import('./commands/cancel.js')).registerCancel],
  ['stats', async () => (await import('./commands/stats.js')).registerStats],
  ['workers', async () => (await import('./commands/workers.js')).registerWorkers],
  ['schedule', async () => (await import('./commands/schedule.js')).registerSchedule],
  ['workflow', async () => (await import('./commands/workflow.js')).registerWorkflow],
  ['tree', async () => (await import('./commands/tree.js')).registerTree],
  ['types', async () => (await import('./commands/types.js')).registerTypes],
  // One module registers both: `queues` (the list) and `queue` (pause, resume, clean).
  ['queues', async () => (await import('./commands/queues.js')).registerQueues],
  ['overview', async () => (await import('./commands/overview.js')).registerOverview],
  ['perf', async () => (await import('./commands/perf.js')).registerPerf],
  ['stale', async () => (await import('./commands/stale.js')).registerStale],
  ['failed', async () => (await import('./commands/failed.js')).registerFailed],
  ['why', async () => (await import('./commands/why.js')).registerWhy],
  ['doctor', async () => (await import('./commands/doctor.js')).registerDoctor],
  ['watch', async () => (await import('./commands/watch.js')).registerWatch],
  ['cleanup', async () => (await import('./commands/cleanup.js')).registerCleanup],
  ['migrate', async () => (await import('./commands/migrate.js')).registerMigrate],
  ['dataset', async () => (await import('./commands/dataset.js')).registerDataset],
];

/** Commands registered by another command's module (see COMMANDS). */
const REGISTERED_BY: Record<string, string> = { queue: 'queues' };

/** The names of jobctl's top-level commands. */
export const COMMAND_NAMES: readonly string[] = [
  ...COMMANDS.map(([name]) => name),
  ...Object.keys(REGISTERED_BY),
];

/**
 * The program, with every command, or with only `command`'s when it names one (the command about to
 * run: its help and errors are its own, so nothing else needs to be loaded).
 */
export async function buildProgram(
  env: CliEnv,
  result: { code: number },
  command?: string,
): Promise<Command> {
  const program = new Command('jobctl')
    .description('inspect and manage jobd jobs')
    .version(jobdVersion(), '-V, --version', "print jobctl's version")
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(redact(s)) })
    .addHelpText(
      'after',
      `\nEvery command takes --settings, --mongo-uri, --database and --json.\n\n${ENVIRONMENT_HELP}\n\n${JOBCTL_EXIT_CODES_HELP}`,
    );
  const owner = command === undefined ? undefined : (REGISTERED_BY[command] ?? command);
  const only = COMMANDS.filter(([name]) => name === owner);
  const registers = await Promise.all((only.length > 0 ? only : COMMANDS).map(([, load]) => load()));
  for (const register of registers) register(program, env, result);
  throwOnUsageErrors(program);
  return program;
}

/** Run jobctl with a full argv (node, script, ...args); resolves to the exit code after setting it. */
export async function run(argv: string[], env: CliEnv = {}): Promise<number> {
  const result = { code: EXIT_CODES.ok as number };
  try {
    // Only the command named first is loaded; anything else (--help, a typo) needs them all.
    const program = await buildProgram(env, result, argv[2]);
    if (argv.length <= 2) {
      program.outputHelp({ error: true });
      return EXIT_CODES.config;
    }
    await program.parseAsync(argv);
    return result.code;
  } catch (err) {
    if (isCommanderError(err)) return commanderExitCode(err);
    process.stderr.write(`jobctl: ${redact(errorMessage(err))}\n`);
    return exitCodeFor(err);
  }
}

/** Resolves once everything written so far to `stream` has been handed to the OS. */
function drained(stream: NodeJS.WriteStream): Promise<void> {
  // Writes complete in order, so an empty write's callback comes after every earlier one.
  return new Promise((resolve) => stream.write('', () => resolve()));
}

export async function main(argv: string[]): Promise<void> {
  const code = await run(argv);
  // Output to a pipe may still be queued (a large --json); process.exit would cut it short.
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  // Exit explicitly: a driver or embedded-server timer must not keep a finished command alive.
  process.exit(code);
}
