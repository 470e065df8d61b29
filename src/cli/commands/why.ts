import { Command } from 'commander';
import { why } from '../../monitor/why.js';
import { JOB_LOOKUP_EXIT_CODES_HELP } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

export const registerWhy: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('why'))
      .description('explain why a job is not running')
      .argument('<id>', 'job id')
      .addHelpText('after', JOB_LOOKUP_EXIT_CODES_HELP)
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const r = await why(conn.store, ctx.config, id, ctx.clock.now());
          ctx.printer.emit(r, () =>
            [
              `job ${r.id} (${r.type}, queue ${r.queue}) is ${r.state}:`,
              ...r.reasons.map((x) => `  - ${x.message}`),
            ].join('\n'),
          );
        });
      }),
  );
};
