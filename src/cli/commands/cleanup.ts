import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration, DURATION_ALLOWED } from '../../config/duration.js';
import { cleanupJobs } from '../../ops/cleanup.js';
import { CLEANUP_BATCH } from '../../store/index.js';
import { FINISHED_STATES, type JobState } from '../../types.js';
import { intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { keyValues } from '../output.js';

interface CleanupOpts extends CommonOptions {
  olderThan: number;
  state: JobState[];
  type?: string;
  dryRun?: boolean;
  batchSize: number;
}

export const registerCleanup: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('cleanup'))
      .description(
        'delete finished jobs older than an age, with their events and log files (batched, resumable)',
      )
      .addOption(
        new Option('--older-than <age>', 'finished longer ago than this, e.g. 30d, 12h')
          .makeOptionMandatory()
          .argParser((v: string) => {
            const ms = parseDuration(v);
            if (ms === null) throw new InvalidArgumentError(`${DURATION_ALLOWED}.`);
            return ms;
          }),
      )
      .addOption(
        new Option('--state <states>', 'finished states to delete, comma-separated')
          .default([...FINISHED_STATES], FINISHED_STATES.join(','))
          .argParser((v: string) => {
            const states = v.split(',').map((s) => s.trim());
            for (const s of states) {
              if (!FINISHED_STATES.includes(s as JobState))
                throw new InvalidArgumentError(
                  `"${s}" is not a finished state: use ${FINISHED_STATES.join(', ')}.`,
                );
            }
            return states as JobState[];
          }),
      )
      .option('--type <type>', 'only jobs of this type')
      .option('--dry-run', 'count what would be deleted; delete nothing')
      .option('--batch-size <n>', 'jobs per batch', intOption(1, 100_000), CLEANUP_BATCH)
      .addHelpText(
        'after',
        '\nUnfinished jobs are never touched, nor any job of a workflow with unfinished jobs, nor a finished job an\nunfinished job depends on or is the parent of. A killed run can simply be started again.',
      )
      .action(async (opts: CleanupOpts) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const totals = await cleanupJobs(conn.store, {
            olderThanMs: Object.fromEntries(opts.state.map((s) => [s, opts.olderThan])),
            ...(opts.type !== undefined ? { type: opts.type } : {}),
            dryRun: !!opts.dryRun,
            batchSize: opts.batchSize,
            logDir: ctx.config.logDir,
            now,
          });
          const out = {
            dryRun: !!opts.dryRun,
            before: new Date(now.getTime() - opts.olderThan),
            states: opts.state,
            ...totals,
          };
          ctx.printer.emit(out, () =>
            keyValues([
              [opts.dryRun ? 'jobs that would be deleted' : 'jobs deleted', totals.jobs],
              [opts.dryRun ? 'events that would be deleted' : 'events deleted', totals.events],
              ...opts.state.map((s): [string, unknown] => [`  ${s}`, totals.byState[s] ?? 0]),
              ['kept (workflow, parent or dependent unfinished)', totals.kept],
              ['finished before', out.before],
            ]),
          );
        });
      }),
  );
};
