import { Command } from 'commander';
import { retry } from '../../store/operator.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

export const registerRetry: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('retry'))
      .description('queue a failed or cancelled job again, with a fresh set of attempts')
      .argument('<id>', 'job id')
      .addHelpText(
        'after',
        '\nExit codes: 0 queued again; 1 failure, or the job is not failed or cancelled; 2 bad settings, flags or arguments; 3 no job with that id.',
      )
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const job = await retry(conn.store, id, { now: ctx.clock.now(), by: 'jobctl' });
          ctx.printer.emit({ id: job._id, state: job.state }, () => `job ${job._id} queued again`);
        });
      }),
  );
};
