import { Command, InvalidArgumentError, Option } from 'commander';
import { ValidationError } from '../../errors.js';
import { enqueue } from '../../store/enqueue.js';
import { resolveNewJob } from '../../store/newJob.js';
import { get } from '../../store/queries.js';
import type { Store } from '../../store/types.js';
import { watchJob } from '../../store/watch.js';
import { FINISHED_STATES, type EnqueueOptions, type JobDoc } from '../../types.js';
import { EXIT_CODES } from '../../errors.js';
import { intOption, isoDateOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

function jsonOption(value: string): unknown {
  try {
    return JSON.parse(value) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(`is not valid JSON (${(err as Error).message}).`);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function uuidOption(value: string): string {
  if (!UUID.test(value))
    throw new InvalidArgumentError('must be a UUID like 123e4567-e89b-12d3-a456-426614174000.');
  return value.toLowerCase();
}

function textOption(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('must not be empty.');
  return value;
}

interface EnqueueFlags extends CommonOptions {
  params?: unknown;
  priority?: number;
  delay?: number;
  runAt?: Date;
  maxAttempts?: number;
  timeout?: number;
  dedupeKey?: string;
  dataset?: string;
  tag?: string[];
  wait?: boolean;
}

/** Until the job finishes: change-stream wake-ups where offered, plus a slow re-read as a safety net. */
async function waitForFinish(store: Store, id: string): Promise<JobDoc> {
  const SAFETY_POLL_MS = 1_000;
  return new Promise<JobDoc>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let checking = false;
    let again = false;
    const finish = (err: unknown, job?: JobDoc): void => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      void watcher.close().finally(() => (job ? resolve(job) : reject(err)));
    };
    const check = async (): Promise<void> => {
      if (checking) {
        again = true;
        return;
      }
      checking = true;
      try {
        do {
          again = false;
          const job = await get(store, id);
          if (!job) return finish(new Error(`job ${id} disappeared while waiting for it`));
          if (FINISHED_STATES.includes(job.state)) return finish(null, job);
        } while (again && !settled);
      } catch (err) {
        finish(err);
      } finally {
        checking = false;
      }
    };
    const tick = (): void => {
      timer = setTimeout(() => {
        void check().then(() => {
          if (!settled) tick();
        });
      }, SAFETY_POLL_MS);
    };
    const watcher = watchJob(store, id, {
      onChange: () => void check(),
      onError: () => {
        // No change stream: the safety-net re-read alone carries on.
      },
    });
    void check();
    tick();
  });
}

export const registerEnqueue: RegisterCommand = (program, env, result) => {
  program.addCommand(
    withCommonOptions(new Command('enqueue'))
      .description('add a job; prints its id')
      .argument('<type>', 'job type')
      .addOption(new Option('--params <json>', 'job parameters as JSON').argParser(jsonOption))
      .addOption(new Option('--priority <n>', '1 (highest) to 100').argParser(intOption(1, 100)))
      .addOption(
        new Option('--delay <ms>', 'run no earlier than this many ms from now').argParser(intOption(0)),
      )
      .addOption(
        new Option('--run-at <iso>', 'run no earlier than this time (ISO 8601)').argParser(isoDateOption),
      )
      .addOption(
        new Option('--max-attempts <n>', 'attempts before the job fails').argParser(intOption(1, 1000)),
      )
      .addOption(new Option('--timeout <ms>', 'per-attempt timeout in ms').argParser(intOption(1)))
      .addOption(
        new Option(
          '--dedupe-key <key>',
          'return the unfinished job with this key instead of adding one',
        ).argParser(textOption),
      )
      .addOption(new Option('--dataset <uuid>', 'dataset this job belongs to').argParser(uuidOption))
      .addOption(
        new Option('--tag <tag>', 'a tag (repeatable)').argParser((v: string, prev: string[] | undefined) => [
          ...(prev ?? []),
          textOption(v),
        ]),
      )
      .addOption(new Option('--wait', 'wait until the job finishes; exit 0 if it completed, 1 otherwise'))
      .action(async (type: string, opts: EnqueueFlags) => {
        if (opts.delay !== undefined && opts.runAt !== undefined) {
          throw new ValidationError('--delay and --run-at cannot be used together; give one of them');
        }
        const ctx = commandContext(opts, env);
        const def = ctx.config.jobTypes[type];
        if (!def) {
          const known = Object.keys(ctx.config.jobTypes);
          ctx.printer.note(
            `warning: job type "${type}" is not in these settings (known: ${known.length ? known.join(', ') : 'none'}); a daemon that does not know it will fail the job`,
          );
        }
        const defaults = def ?? ctx.config.defaults;
        const enqueueOptions: EnqueueOptions = {
          ...(opts.priority !== undefined ? { priority: opts.priority } : {}),
          ...(opts.delay !== undefined ? { delayMs: opts.delay } : {}),
          ...(opts.runAt !== undefined ? { runAt: opts.runAt } : {}),
          ...(opts.maxAttempts !== undefined ? { maxAttempts: opts.maxAttempts } : {}),
          ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout } : {}),
          ...(opts.dedupeKey !== undefined ? { dedupeKey: opts.dedupeKey } : {}),
          ...(opts.dataset !== undefined ? { datasetUuid: opts.dataset } : {}),
          ...(opts.tag !== undefined ? { tags: opts.tag } : {}),
        };
        await withConnection(
          ctx,
          async (conn) => {
            const now = ctx.clock.now();
            const newJob = resolveNewJob(type, opts.params ?? null, enqueueOptions, defaults, now);
            const { job, created } = await enqueue(conn.store, newJob, now);
            if (!opts.wait) {
              ctx.printer.emit({ id: job._id, created, state: job.state }, () =>
                created ? job._id : `${job._id} (an unfinished job with this dedupe key already existed)`,
              );
              return;
            }
            if (conn.backend === 'embedded (in-process)') {
              ctx.printer.note(
                'warning: no jobd is running on this database; the job runs once a daemon starts',
              );
            }
            if (!ctx.printer.json) process.stdout.write(`${job._id}\n`);
            const done = await waitForFinish(conn.store, job._id);
            ctx.printer.emit(
              {
                id: done._id,
                created,
                state: done.state,
                result: done.result,
                lastError: done.lastError ?? null,
              },
              () =>
                done.state === 'completed'
                  ? `job ${done._id} completed${done.result !== undefined ? `: ${JSON.stringify(done.result)}` : ''}`
                  : `job ${done._id} ${done.state}${done.lastError ? `: ${done.lastError.name}: ${done.lastError.message}` : ''}`,
            );
            result.code = done.state === 'completed' ? EXIT_CODES.ok : EXIT_CODES.failure;
          },
          { ensureIndexes: true },
        );
      }),
  );
};
