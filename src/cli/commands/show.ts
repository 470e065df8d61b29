import { Command } from 'commander';
import { NotFoundError } from '../../errors.js';
import { eventsOf } from '../../store/events.js';
import { get } from '../../store/queries.js';
import { JOB_LOOKUP_EXIT_CODES_HELP } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import type { JobDoc, JobError } from '../../types.js';
import { formatBytes, formatDate, formatMs, keyValues, table } from '../output.js';

function describeError(e: JobError): string {
  return `${e.name}${e.code ? ` (${e.code})` : ''}: ${e.message}`;
}

const sameAttempt = (a: JobError, b: JobError): boolean =>
  a.attempt === b.attempt && new Date(a.at).getTime() === new Date(b.at).getTime();

/**
 * Where the job stands, first: a completed job's result, a failed or retrying job's current error.
 * lastError is the error of the most recent failed attempt and is kept for history, so on a job that
 * went on to complete (or is running again) it is not the job's outcome.
 */
function outcome(job: JobDoc, maxAttempts: string): { lines: string[]; current: JobError | null } {
  const at = (d: Date | null | undefined): string => (d ? ` at ${formatDate(d)}` : '');
  const attempt = `attempt ${job.attempts} of ${maxAttempts}`;
  switch (job.state) {
    case 'completed':
      return {
        lines: [
          `completed on ${attempt}${at(job.finishedAt)}`,
          `result: ${JSON.stringify(job.result ?? null)}`,
        ],
        current: null,
      };
    case 'failed':
      return {
        lines: [
          `failed on ${attempt}${at(job.finishedAt)}`,
          ...(job.lastError ? [`error: ${describeError(job.lastError)}`] : []),
        ],
        current: job.lastError ?? null,
      };
    case 'retrying':
      return {
        lines: [
          `retrying: ${attempt} failed; the next attempt runs at ${formatDate(job.runAt)}`,
          ...(job.lastError ? [`error: ${describeError(job.lastError)}`] : []),
        ],
        current: job.lastError ?? null,
      };
    case 'cancelled':
      return { lines: [`cancelled${at(job.finishedAt)} after ${job.attempts} attempt(s)`], current: null };
    case 'running':
      return { lines: [`running: ${attempt}, started${at(job.startedAt)}`], current: null };
    case 'queued':
      return { lines: [`queued: runs at ${formatDate(job.runAt)} or later`], current: null };
    case 'waiting':
      return { lines: ['waiting for the jobs it depends on'], current: null };
  }
}

/** Errors of attempts before the current one, oldest first, with their attempt numbers. */
function earlierErrors(job: JobDoc, current: JobError | null): JobError[] {
  const all = [...(job.errors ?? [])];
  if (job.lastError && !all.some((e) => sameAttempt(e, job.lastError!))) all.push(job.lastError);
  return all.filter((e) => !current || !sameAttempt(e, current)).sort((a, b) => a.attempt - b.attempt);
}

export const registerShow: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('show'))
      .description('one job: its outcome, every field, errors of earlier attempts and its event history')
      .argument('<id>', 'job id')
      .addHelpText('after', JOB_LOOKUP_EXIT_CODES_HELP)
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const job = await get(conn.store, id);
          if (!job) throw new NotFoundError(`job ${id} not found in database ${ctx.config.database}`);
          const events = await eventsOf(conn.store, id);
          ctx.printer.emit({ job, events }, () => {
            const r = job.resources;
            const typeDef = ctx.config.jobTypes[job.type];
            const maxAttempts = `${job.maxAttempts ?? `${typeDef?.maxAttempts ?? '?'} (the type's)`}`;
            const now = outcome(job, maxAttempts);
            const fields: [string, unknown][] = [
              ['id', job._id],
              ['type', job.type],
              ['state', job.state],
              ['priority', job.priority],
              ['attempts', `${job.attempts} of ${maxAttempts}`],
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
            ];
            const parts = [
              ...now.lines,
              keyValues(fields.filter(([, v]) => v !== null && v !== undefined && v !== '')),
            ];
            const earlier = earlierErrors(job, now.current);
            if (earlier.length) {
              parts.push(
                'errors of earlier attempts',
                table(
                  ['attempt', 'at', 'worker', 'error'],
                  earlier.map((e) => [e.attempt, formatDate(e.at), e.worker ?? '', describeError(e)]),
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
