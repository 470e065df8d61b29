import { Command } from 'commander';
import { NotFoundError } from '../../errors.js';
import { eventsOf } from '../../store/events.js';
import { get } from '../../store/queries.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatBytes, formatDate, formatMs, keyValues, table } from '../output.js';

export const registerShow: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('show'))
      .description('one job: every field and its event history')
      .argument('<id>', 'job id')
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const job = await get(conn.store, id);
          if (!job) throw new NotFoundError(`job ${id} not found in database ${ctx.config.database}`);
          const events = await eventsOf(conn.store, id);
          ctx.printer.emit({ job, events }, () => {
            const r = job.resources;
            const typeDef = ctx.config.jobTypes[job.type];
            const fields: [string, unknown][] = [
              ['id', job._id],
              ['type', job.type],
              ['state', job.state],
              ['priority', job.priority],
              [
                'attempts',
                `${job.attempts} of ${job.maxAttempts ?? `${typeDef?.maxAttempts ?? '?'} (the type's)`}`,
              ],
              [
                'timeout',
                job.timeoutMs !== null
                  ? formatMs(job.timeoutMs)
                  : `${typeDef ? formatMs(typeDef.timeoutMs) : '?'} (the type's)`,
              ],
              ['run at', formatDate(job.runAt)],
              ['created', formatDate(job.createdAt)],
              ['started', formatDate(job.startedAt)],
              ['finished', formatDate(job.finishedAt)],
              ['updated', formatDate(job.updatedAt)],
              ['params', job.params],
              ['result', job.result],
              [
                'progress',
                job.progress ? `${job.progress.percent}% ${job.progress.message ?? ''}`.trim() : '',
              ],
              ['lease', job.lease ? `${job.lease.owner} until ${formatDate(job.lease.expiresAt)}` : ''],
              ['dataset', job.datasetUuid],
              ['dedupe key', job.dedupeKey],
              ['tags', job.tags?.join(', ')],
              ['peak RSS', formatBytes(r?.peakRssBytes)],
              ['CPU', formatMs(r?.cpuMs)],
              ['wall time', formatMs(r?.wallMs)],
              [
                'last error',
                job.lastError
                  ? `${job.lastError.name}${job.lastError.code ? ` (${job.lastError.code})` : ''}: ${job.lastError.message}`
                  : '',
              ],
            ];
            const parts = [keyValues(fields.filter(([, v]) => v !== null && v !== undefined && v !== ''))];
            if (job.errors?.length) {
              parts.push(
                'errors',
                table(
                  ['attempt', 'at', 'worker', 'error'],
                  job.errors.map((e) => [
                    e.attempt,
                    formatDate(e.at),
                    e.worker ?? '',
                    `${e.name}: ${e.message}`,
                  ]),
                ),
              );
            }
            parts.push(
              'events',
              events.length
                ? table(
                    ['at', 'from', 'to', 'attempt', 'worker', 'message'],
                    events.map((e) => [
                      formatDate(e.at),
                      e.from ?? '',
                      e.to,
                      e.attempt,
                      e.worker ?? '',
                      e.message ?? '',
                    ]),
                  )
                : '(none)',
            );
            if (job.logTail) parts.push('log tail', job.logTail);
            return parts.join('\n');
          });
        });
      }),
  );
};
