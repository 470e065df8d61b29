import { Command, InvalidArgumentError, Option } from 'commander';
import { list } from '../../store/queries.js';
import { JOB_STATES, type JobState } from '../../types.js';
import { intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatDate, table } from '../output.js';

function statesOption(value: string): JobState[] {
  const states = value.split(',').map((s) => s.trim());
  for (const s of states) {
    if (!(JOB_STATES as readonly string[]).includes(s)) {
      throw new InvalidArgumentError(
        `"${s}" is not a job state; use one or more (comma-separated) of ${JOB_STATES.join(', ')}.`,
      );
    }
  }
  return states as JobState[];
}

interface ListFlags extends CommonOptions {
  state?: JobState[];
  type?: string;
  dataset?: string;
  limit: number;
}

export const registerList: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('list'))
      .description('jobs, newest first')
      .addOption(
        new Option(
          '--state <states>',
          `only these states (comma-separated: ${JOB_STATES.join(', ')})`,
        ).argParser(statesOption),
      )
      .addOption(new Option('--type <type>', 'only this job type'))
      .addOption(new Option('--dataset <uuid>', 'only jobs of this dataset'))
      .addOption(
        new Option('--limit <n>', 'at most this many jobs (1 to 10000)')
          .argParser(intOption(1, 10_000))
          .default(50),
      )
      .action(async (opts: ListFlags) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const jobs = await list(conn.store, {
            ...(opts.state ? { state: opts.state.length === 1 ? opts.state[0]! : opts.state } : {}),
            ...(opts.type !== undefined ? { type: opts.type } : {}),
            ...(opts.dataset !== undefined ? { datasetUuid: opts.dataset } : {}),
            limit: opts.limit,
            order: 'newest',
          });
          ctx.printer.emit(jobs, () =>
            jobs.length === 0
              ? 'no jobs'
              : table(
                  ['id', 'type', 'state', 'prio', 'attempts', 'progress', 'created', 'run at', 'finished'],
                  jobs.map((j) => [
                    j._id,
                    j.type,
                    j.state,
                    j.priority,
                    `${j.attempts}/${j.maxAttempts ?? ctx.config.jobTypes[j.type]?.maxAttempts ?? '?'}`,
                    j.progress ? `${j.progress.percent}%` : '',
                    formatDate(j.createdAt),
                    formatDate(j.runAt),
                    formatDate(j.finishedAt),
                  ]),
                ),
          );
        });
      }),
  );
};
