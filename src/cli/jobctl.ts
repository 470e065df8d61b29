/**
 * jobctl: the admin CLI. Same settings as jobd (--settings / JOBD_SETTINGS, JOBD_* variables, flags).
 * Exit codes (also in --help): 0 ok, 1 failure, 2 bad flags/arguments/settings, 3 job not found.
 */
import { Command } from 'commander';
import { EXIT_CODES } from '../errors.js';
import { redact } from '../redact.js';
import { registerCancel } from './commands/cancel.js';
import { registerEnqueue } from './commands/enqueue.js';
import { registerList } from './commands/list.js';
import { registerLogs } from './commands/logs.js';
import { registerPing } from './commands/ping.js';
import { registerRetry } from './commands/retry.js';
import { registerSchedule } from './commands/schedule.js';
import { registerShow } from './commands/show.js';
import { registerStats } from './commands/stats.js';
import { registerStatus } from './commands/status.js';
import { registerVersion } from './commands/version.js';
import { registerTree } from './commands/tree.js';
import { registerWorkers } from './commands/workers.js';
import { registerWorkflow } from './commands/workflow.js';
import { registerQueues } from './commands/queues.js';
import { registerTypes } from './commands/types.js';
import { registerOverview } from './commands/overview.js';
import { registerPerf } from './commands/perf.js';
import { registerStale } from './commands/stale.js';
import { registerFailed } from './commands/failed.js';
import { registerWhy } from './commands/why.js';
import { registerDoctor } from './commands/doctor.js';
import { registerWatch } from './commands/watch.js';
import { registerCleanup } from './commands/cleanup.js';
import { registerMigrate } from './commands/migrate.js';
import { registerDataset } from './commands/dataset.js';
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
import type { CliEnv } from './context.js';

export function buildProgram(env: CliEnv, result: { code: number }): Command {
  const program = new Command('jobctl')
    .description('inspect and manage jobd jobs')
    .version(jobdVersion(), '-V, --version', "print jobctl's version")
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeErr: (s) => process.stderr.write(redact(s)) })
    .addHelpText(
      'after',
      `\nEvery command takes --settings, --mongo-uri, --database and --json.\n\n${ENVIRONMENT_HELP}\n\n${JOBCTL_EXIT_CODES_HELP}`,
    );
  for (const register of [
    registerPing,
    registerVersion,
    registerStatus,
    registerList,
    registerShow,
    registerLogs,
    registerEnqueue,
    registerRetry,
    registerCancel,
    registerStats,
    registerWorkers,
    registerSchedule,
    registerWorkflow,
    registerTree,
    registerTypes,
    registerQueues,
    registerOverview,
    registerPerf,
    registerStale,
    registerFailed,
    registerWhy,
    registerDoctor,
    registerWatch,
    registerCleanup,
    registerMigrate,
    registerDataset,
  ]) {
    register(program, env, result);
  }
  throwOnUsageErrors(program);
  return program;
}

/** Run jobctl with a full argv (node, script, ...args); resolves to the exit code after setting it. */
export async function run(argv: string[], env: CliEnv = {}): Promise<number> {
  const result = { code: EXIT_CODES.ok as number };
  try {
    const program = buildProgram(env, result);
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
