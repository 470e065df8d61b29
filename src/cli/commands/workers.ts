import { Command, Option } from 'commander';
import { listWorkers } from '../../store/workers.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatDate, table } from '../output.js';
import { resourcesText } from '../../worker/resources.js';

export const registerWorkers: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('workers'))
      .description('the worker registry: every daemon with its heartbeat, alive or dead')
      .addOption(new Option('--all', 'include workers that stopped cleanly'))
      .action(async (opts: CommonOptions & { all?: boolean }) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const workers = await listWorkers(conn.store, {
            now,
            leaseMs: ctx.config.worker.leaseMs,
            includeStopped: !!opts.all,
          });
          const rows = workers.map((w) => ({
            id: w._id,
            host: w.host,
            pid: w.pid,
            version: w.version,
            external: w.external === true,
            state: w.state,
            status: w.state === 'stopped' ? 'stopped' : w.dead ? 'dead' : 'alive',
            concurrency: w.concurrency,
            resources: w.resources ?? null,
            unfitTypes: w.unfitTypes ?? [],
            running: w.running,
            startedAt: w.startedAt,
            heartbeatAt: w.heartbeatAt,
            heartbeatAgeMs: now.getTime() - new Date(w.heartbeatAt).getTime(),
          }));
          ctx.printer.emit(rows, () =>
            rows.length === 0
              ? 'no workers registered'
              : table(
                  [
                    'id',
                    'status',
                    'state',
                    'host',
                    'pid',
                    'version',
                    'concurrency',
                    'running',
                    'resources (used/capacity)',
                    'started',
                    'heartbeat',
                  ],
                  rows.map((r) => [
                    r.id,
                    r.status,
                    r.state,
                    r.host,
                    r.pid,
                    r.version,
                    r.concurrency,
                    r.running.length,
                    r.resources ? resourcesText(r.resources) : '-',
                    formatDate(r.startedAt),
                    `${formatDate(r.heartbeatAt)} (${Math.round(r.heartbeatAgeMs / 1000)} s ago)`,
                  ]),
                ),
          );
        });
      }),
  );
};
