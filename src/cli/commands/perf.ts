import { Command } from 'commander';
import { perfByType } from '../../store/index.js';
import { intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatMs, table } from '../output.js';

const DAY_MS = 86_400_000;

export const registerPerf: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('perf'))
      .description(
        'per job type over the last days: count, success rate, run and wait time percentiles, attempts, throughput',
      )
      .option('--days <n>', 'window in days', intOption(1, 3650), 7)
      .option('--type <type>', 'only this job type')
      .action(async (opts: CommonOptions & { days: number; type?: string }) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const since = new Date(now.getTime() - opts.days * DAY_MS);
          const rows = await perfByType(conn.store, {
            since,
            ...(opts.type !== undefined ? { type: opts.type } : {}),
          });
          const hours = opts.days * 24;
          const types = rows.map((r) => ({
            ...r,
            successRate: r.count === 0 ? null : r.completed / r.count,
            throughputPerHour: r.count / hours,
          }));
          ctx.printer.emit({ at: now, since, days: opts.days, types }, () =>
            types.length === 0
              ? `no jobs finished in the last ${opts.days} day(s)`
              : table(
                  [
                    'type',
                    'count',
                    'success',
                    'run p50',
                    'run p95',
                    'run max',
                    'wait p50',
                    'wait p95',
                    'attempts/job',
                    'per hour',
                  ],
                  types.map((t) => [
                    t.type,
                    t.count,
                    t.successRate === null ? '' : `${(t.successRate * 100).toFixed(1)}%`,
                    formatMs(t.runP50Ms),
                    formatMs(t.runP95Ms),
                    formatMs(t.runMaxMs),
                    formatMs(t.waitP50Ms),
                    formatMs(t.waitP95Ms),
                    t.attemptsPerJob === null ? '' : t.attemptsPerJob.toFixed(2),
                    t.throughputPerHour.toFixed(2),
                  ]),
                ),
          );
        });
      }),
  );
};
