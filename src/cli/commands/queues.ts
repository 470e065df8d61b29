import { Command, InvalidArgumentError, Option } from 'commander';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { JOB_TYPE_NAME } from '../../config/validate.js';
import {
  cleanQueueJobs,
  pauseQueue,
  queueMembership,
  queueSummaries,
  resumeQueue,
} from '../../queueAdmin.js';
import { JOB_STATES } from '../../types.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatDate, formatMs, table } from '../output.js';

function queueName(value: string): string {
  if (!JOB_TYPE_NAME.test(value)) {
    throw new InvalidArgumentError(
      'queue names start with a letter and use letters, digits, _ . : - (at most 100).',
    );
  }
  return value;
}

const UNITS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "7d", "12h", "30m", "90s", "2w" → ms. */
export function durationOption(value: string): number {
  const m = /^(\d+)([smhdw])$/.exec(value.trim());
  if (!m || Number(m[1]) <= 0) {
    throw new InvalidArgumentError('must be a positive number with a unit s, m, h, d or w (e.g. 7d, 12h).');
  }
  return Number(m[1]) * UNITS[m[2]!]!;
}

const CLEAN_STATES = ['completed', 'failed', 'cancelled'] as const;

export const registerQueues: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('queues'))
      .description('every queue: its jobs by state, the age of its oldest queued job, paused or not')
      .addHelpText(
        'after',
        `
A job's queue is its type's: the type's "queue" setting, else its module's, else the type's name.
"oldest queued" is the age of the queue's oldest job in state queued (since it was created).`,
      )
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const rows = await queueSummaries(
            conn.store,
            ctx.config.jobTypes,
            ctx.config.queues ?? {},
            ctx.clock.now(),
          );
          ctx.printer.emit(rows, () =>
            table(
              ['queue', 'status', ...JOB_STATES, 'oldest queued', 'concurrency', 'types'],
              rows.map((r) => [
                r.name,
                r.paused ? `paused since ${formatDate(r.pausedAt)}` : 'running',
                ...JOB_STATES.map((s) => r.counts[s]),
                formatMs(r.oldestQueuedAgeMs),
                r.concurrency ?? '',
                r.types.join(', '),
              ]),
            ),
          );
        });
      }),
  );

  const queue = new Command('queue').description('pause, resume or clean one queue');
  for (const [verb, paused] of [
    ['pause', true],
    ['resume', false],
  ] as const) {
    queue.addCommand(
      withCommonOptions(new Command(verb))
        .description(
          paused
            ? 'stop every daemon claiming from this queue (running jobs finish); stored in the database'
            : 'let daemons claim from this queue again',
        )
        .argument('<name>', 'queue name', queueName)
        .action(async (name: string, opts: CommonOptions) => {
          const ctx = commandContext(opts, env);
          await withConnection(ctx, async (conn) => {
            const membership = await queueMembership(ctx.config.jobTypes);
            if (!Object.values(membership).includes(name) && !(name in (ctx.config.queues ?? {}))) {
              ctx.printer.note(
                `note: no job type of these settings is in queue "${name}"; it holds jobs of type "${name}" only`,
              );
            }
            const doc = await (paused ? pauseQueue : resumeQueue)(conn.store, name, {
              now: ctx.clock.now(),
              by: 'jobctl',
            });
            ctx.printer.emit(
              { queue: name, paused: doc.paused, pausedAt: doc.pausedAt ?? null },
              () => `queue ${name} ${doc.paused ? 'paused' : 'resumed'}`,
            );
          });
        }),
    );
  }
  queue.addCommand(
    withCommonOptions(new Command('clean'))
      .description("delete a queue's finished jobs in one state, with their history and log files")
      .argument('<name>', 'queue name', queueName)
      .addOption(
        new Option('--state <state>', 'which finished jobs').choices([...CLEAN_STATES]).makeOptionMandatory(),
      )
      .addOption(
        new Option(
          '--older-than <age>',
          'only jobs that finished longer ago than this (7d, 12h, 30m)',
        ).argParser(durationOption),
      )
      .addOption(new Option('--dry-run', 'count what would be deleted; delete nothing'))
      .action(
        async (
          name: string,
          opts: CommonOptions & {
            state: (typeof CLEAN_STATES)[number];
            olderThan?: number;
            dryRun?: boolean;
          },
        ) => {
          const ctx = commandContext(opts, env);
          await withConnection(ctx, async (conn) => {
            const now = ctx.clock.now();
            let logFiles = 0;
            const res = await cleanQueueJobs(conn.store, ctx.config.jobTypes, name, {
              state: opts.state,
              ...(opts.olderThan !== undefined ? { before: new Date(now.getTime() - opts.olderThan) } : {}),
              dryRun: !!opts.dryRun,
              onDeleted: async (ids) => {
                for (const id of ids) {
                  const file = join(ctx.config.logDir, `${id}.log`);
                  try {
                    await rm(file);
                    logFiles++;
                  } catch (err) {
                    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
                  }
                }
              },
            });
            ctx.printer.emit({ ...res, logFiles }, () =>
              res.dryRun
                ? `${res.jobs} ${opts.state} job${res.jobs === 1 ? '' : 's'} of queue ${name} would be deleted (dry run; types: ${res.types.join(', ')})`
                : `deleted ${res.jobs} ${opts.state} job${res.jobs === 1 ? '' : 's'} of queue ${name}, ${res.events} history events and ${logFiles} log files`,
            );
          });
        },
      ),
  );
  program.addCommand(queue);
};
