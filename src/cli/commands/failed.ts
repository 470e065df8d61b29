import { Command } from 'commander';
import { failureGroups } from '../../store/index.js';
import { intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { table } from '../output.js';

export const registerFailed: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('failed'))
      .description(
        'jobs that failed for good in the last hours, grouped by type and error code, with a sample message',
      )
      .option('--hours <n>', 'window in hours', intOption(1, 24 * 3650), 24)
      .action(async (opts: CommonOptions & { hours: number }) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const since = new Date(now.getTime() - opts.hours * 3_600_000);
          const groups = await failureGroups(conn.store, { since });
          ctx.printer.emit({ at: now, since, hours: opts.hours, groups }, () =>
            groups.length === 0
              ? `no failed jobs in the last ${opts.hours} hour(s)`
              : table(
                  ['type', 'code', 'count', 'last', 'sample job', 'sample message'],
                  groups.map((g) => [
                    g.type,
                    g.code ?? '',
                    g.count,
                    g.lastAt,
                    g.sampleJobId,
                    (g.sampleMessage ?? '').slice(0, 100),
                  ]),
                ),
          );
        });
      }),
  );
};
