import { Command } from 'commander';
import { listWorkers, staleJobs } from '../../store/index.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { table } from '../output.js';

export const registerStale: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('stale'))
      .description(
        'running jobs whose lease expired or whose progress has not moved (monitor.staleProgressMs), with worker and pid',
      )
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const [jobs, workers] = await Promise.all([
            staleJobs(conn.store, { now, progressStaleMs: ctx.config.monitor.staleProgressMs }),
            listWorkers(conn.store, { now, leaseMs: ctx.config.worker.leaseMs }),
          ]);
          const byId = new Map(workers.map((w) => [w._id, w]));
          const rows = jobs.map((j) => {
            const w = j.lease ? byId.get(j.lease.owner) : undefined;
            return {
              id: j._id,
              type: j.type,
              why: j.why,
              worker: j.lease?.owner ?? null,
              host: w?.host ?? null,
              pid: w?.pid ?? null,
              workerDead: w ? w.dead || w.state === 'stopped' : null,
              leaseExpiresAt: j.lease?.expiresAt ?? null,
              progress: j.progress ?? null,
              startedAt: j.startedAt ?? null,
            };
          });
          ctx.printer.emit(
            { at: now, staleProgressMs: ctx.config.monitor.staleProgressMs, jobs: rows },
            () =>
              rows.length === 0
                ? 'no stale jobs'
                : table(
                    [
                      'job',
                      'type',
                      'why',
                      'worker',
                      'pid',
                      'worker dead',
                      'lease expires',
                      'progress',
                      'started',
                    ],
                    rows.map((r) => [
                      r.id,
                      r.type,
                      r.why,
                      r.worker,
                      r.pid,
                      r.workerDead === null ? '?' : r.workerDead ? 'yes' : 'no',
                      r.leaseExpiresAt,
                      r.progress ? `${r.progress.percent}%` : '',
                      r.startedAt,
                    ]),
                  ),
          );
        });
      }),
  );
};
