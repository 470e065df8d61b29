import { Command } from 'commander';
import { cancel } from '../../store/operator.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

export const registerCancel: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('cancel'))
      .description('cancel a job that has not finished (a running one is stopped by its worker)')
      .argument('<id>', 'job id')
      .addHelpText(
        'after',
        '\nExit codes: 0 cancelled; 1 failure, or the job had already finished; 2 bad settings, flags or arguments; 3 no job with that id.',
      )
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const job = await cancel(conn.store, id, {
            now: ctx.clock.now(),
            by: 'jobctl',
            reason: 'cancelled by operator',
          });
          ctx.printer.emit({ id: job._id, state: job.state }, () => `job ${job._id} cancelled`);
        });
      }),
  );
};
