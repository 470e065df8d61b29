import { Command } from 'commander';
import { HOUR_MS, typeStats } from '../../monitor/stats.js';
import { JOB_STATES } from '../../types.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatMs, table } from '../output.js';

export const registerStats: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('stats'))
      .description('jobs by type and state, throughput over the last hour, average wall time')
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const types = await typeStats(conn.store, now);
          ctx.printer.emit({ at: now, windowMs: HOUR_MS, types }, () =>
            types.length === 0
              ? 'no jobs'
              : table(
                  ['type', ...JOB_STATES, 'total', 'done/h', 'failed/h', 'per min', 'avg wall'],
                  types.map((t) => [
                    t.type,
                    ...JOB_STATES.map((s) => t.states[s]),
                    t.total,
                    t.lastHour.completed,
                    t.lastHour.failed,
                    t.lastHour.perMinute,
                    formatMs(t.avgWallMs),
                  ]),
                ),
          );
        });
      }),
  );
};
