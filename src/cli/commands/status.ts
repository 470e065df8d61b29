import { Command } from 'commander';
import { listWorkers } from '../../store/workers.js';
import { countByState } from '../../store/queries.js';
import { JOB_STATES } from '../../types.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { table } from '../output.js';

export const registerStatus: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('status'))
      .description('jobs by state and workers alive/dead')
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const counts = await countByState(conn.store);
          const workers = await listWorkers(conn.store, {
            now,
            leaseMs: ctx.config.worker.leaseMs,
            includeStopped: false,
          });
          const alive = workers.filter((w) => !w.dead).length;
          const data = {
            backend: conn.backend,
            database: ctx.config.database,
            jobs: counts,
            total: Object.values(counts).reduce((a, b) => a + b, 0),
            workers: { alive, dead: workers.length - alive },
          };
          ctx.printer.emit(data, () =>
            [
              `database ${data.database} (${data.backend})`,
              table([...JOB_STATES, 'total'], [[...JOB_STATES.map((s) => counts[s]), data.total]]),
              `workers: ${alive} alive, ${data.workers.dead} dead`,
            ].join('\n'),
          );
        });
      }),
  );
};
