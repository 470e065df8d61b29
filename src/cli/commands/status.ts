import { Command } from 'commander';
import { listWorkers, unservedTypes } from '../../store/workers.js';
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

/** "12 s ago", "3 min ago", "2 h ago". */
function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export const registerStatus: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('status'))
      .description(
        'jobs by state, job types no live daemon runs, and workers alive/dead with when each was last seen',
      )
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const leaseMs = ctx.config.worker.leaseMs;
          const counts = await countByState(conn.store);
          const workers = await listWorkers(conn.store, { now, leaseMs, includeStopped: false });
          const unserved = await unservedTypes(conn.store, { now, leaseMs });
          const alive = workers.filter((w) => !w.dead).length;
          const data = {
            backend: conn.backend,
            database: ctx.config.database,
            jobs: counts,
            total: Object.values(counts).reduce((a, b) => a + b, 0),
            workers: {
              alive,
              dead: workers.length - alive,
              list: workers.map((w) => ({
                id: w._id,
                status: w.dead ? 'dead' : 'alive',
                heartbeatAt: w.heartbeatAt,
                lastSeenMs: now.getTime() - new Date(w.heartbeatAt).getTime(),
                types: w.types ?? null,
              })),
            },
            unservedTypes: unserved,
          };
          ctx.printer.emit(data, () =>
            [
              `database ${data.database} (${data.backend})`,
              table([...JOB_STATES, 'total'], [[...JOB_STATES.map((s) => counts[s]), data.total]]),
              ...unserved.map((u) => {
                const n = u.queued + u.retrying;
                const jobs = `${n} job${n === 1 ? '' : 's'} of type ${u.type} wait`;
                if (u.unfit) {
                  const why = u.unfit.map((f) => `${f.worker}: ${f.why}`).join('; ');
                  return `${jobs}: no live daemon has the resources this type needs (${why})`;
                }
                return `${jobs}: no live daemon runs this type`;
              }),
              `workers: ${alive} alive, ${data.workers.dead} dead`,
              ...data.workers.list.map((w) => `  ${w.id} ${w.status}, last seen ${ago(w.lastSeenMs)}`),
            ].join('\n'),
          );
        });
      }),
  );
};
