import { Command, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { ValidationError } from '../../errors.js';
import { enqueue, enqueueMany, type EnqueueResult } from '../../store/enqueue.js';
import { resolveNewJob } from '../../store/newJob.js';
import { get } from '../../store/queries.js';
import type { Store } from '../../store/types.js';
import { watchJob } from '../../store/watch.js';
import { FINISHED_STATES, type EnqueueOptions, type JobDoc } from '../../types.js';
import { EXIT_CODES } from '../../errors.js';
import { errorMessage, intOption, isoDateOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommandContext,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import type { Connection } from '../connect.js';
import { checkTypes, knownTypes } from '../knownTypes.js';
import { checkInputs } from '../../jobs/checkInputs.js';
import {
  JOB_LINE_FIELDS,
  paramsFromStdin,
  paramsOption,
  parseJobLines,
  readStdin,
  type JobLine,
  type ParamsOption,
} from '../jobInput.js';
import { RateTracker } from '../progressBar.js';
import { progressLine } from './watch.js';

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
  params?: ParamsOption;
  file?: string;
  allowUnknownType?: boolean;
  priority?: number;
  delay?: number;
  runAt?: Date;
  maxAttempts?: number;
  timeout?: number;
  dedupeKey?: string;
  dataset?: string;
  tag?: string[];
  wait?: boolean;
  dependsOn?: string[];
  onDependencyFailure?: 'fail' | 'skip' | 'ignore';
}

/** Until the job finishes: change-stream wake-ups where offered, plus a slow re-read as a safety net. */
async function waitForFinish(store: Store, id: string, onJob?: (job: JobDoc) => void): Promise<JobDoc> {
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
          onJob?.(job);
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

/** Jobs written per insertMany when enqueueing a file. */
const BATCH_SIZE = 1_000;

/** The per-job flags, which a jobs file gives per line instead. */
const PER_JOB_FLAGS: [keyof EnqueueFlags, string][] = [
  ['params', '--params'],
  ['priority', '--priority'],
  ['delay', '--delay'],
  ['runAt', '--run-at'],
  ['maxAttempts', '--max-attempts'],
  ['timeout', '--timeout'],
  ['dedupeKey', '--dedupe-key'],
  ['dataset', '--dataset'],
  ['tag', '--tag'],
  ['wait', '--wait'],
  ['dependsOn', '--depends-on'],
  ['onDependencyFailure', '--on-dependency-failure'],
];

const HELP_AFTER = `
Params are a JSON object: inline, from a file (--params @params.json) or from stdin (--params @-).

With --file, each non-blank line of the file (- for stdin) is one job, a JSON object with the fields
  ${JOB_LINE_FIELDS.join(', ')}
("type" is required; "params" defaults to {}; runAt is ISO 8601; delayMs, timeoutMs in ms), e.g.
  {"type":"echo","params":{"n":1},"priority":2,"tags":["batch-7"]}
Every line is checked before any job is written; a bad line is reported with its number and field.
Params of a type whose module declares an input schema (defineJobType) are validated against it, and
path fields must lie inside the data dirs (see jobctl types).
Jobs are written in batches of ${BATCH_SIZE}; the ids are printed in line order (--json: an array).

A job type must be defined by these settings or registered by a live daemon (see jobctl workers);
--allow-unknown-type enqueues one that no daemon knows yet (it runs once a daemon that knows it starts).

Exit codes: 0 enqueued (with --wait: the job completed); 1 failure (with --wait: the job failed or was
cancelled); 2 bad flags, params, jobs file or an unknown job type, and nothing was enqueued.`;

/** Defaults for a job: the type's settings when these settings define it, else only the priority. */
function defaultsFor(ctx: CommandContext, type: string) {
  const def = ctx.config.jobTypes[type];
  // Without the type's settings, maxAttempts/timeoutMs stay null: the daemon that runs it applies its own.
  return def ?? { priority: ctx.config.defaults.priority };
}

async function checkTypesKnown(
  ctx: CommandContext,
  conn: Connection,
  types: string[],
  opts: EnqueueFlags,
  where: (type: string) => string,
): Promise<void> {
  if (types.every((t) => ctx.config.jobTypes[t])) return;
  const known = await knownTypes(ctx.config, conn.store, ctx.clock.now());
  if (!opts.allowUnknownType) return checkTypes(types, known, where);
  const all = new Set([...known.fromSettings, ...known.fromDaemons]);
  for (const t of new Set(types.filter((x) => !all.has(x)))) {
    ctx.printer.note(
      `note: job type "${t}" is not known to these settings or any live daemon; its jobs wait until a daemon that knows it starts`,
    );
  }
}

async function enqueueFile(ctx: CommandContext, opts: EnqueueFlags, type: string | undefined): Promise<void> {
  const given = [
    ...(type !== undefined ? ['<type>'] : []),
    ...PER_JOB_FLAGS.filter(([k]) => opts[k] !== undefined).map(([, flag]) => flag),
  ];
  if (given.length) {
    throw new ValidationError(
      `--file cannot be combined with ${given.join(', ')}: each line of the file gives its own job's fields`,
    );
  }
  const file = opts.file!;
  const label = file === '-' ? 'stdin' : file;
  let content: string;
  if (file === '-') content = await readStdin();
  else {
    try {
      content = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why =
        code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err);
      throw new ValidationError(`--file ${file}: cannot read it: ${why}`);
    }
  }
  const jobs = parseJobLines(content, label);
  await checkInputs(
    jobs.map((j) => ({ type: j.type, params: j.params, where: `${label} line ${j.line}: ` })),
    ctx.config.jobTypes,
    ctx.config.dataDirs,
  );
  await withConnection(
    ctx,
    async (conn) => {
      const linesOf = (t: string): string => {
        const lines = jobs.filter((j) => j.type === t).map((j) => j.line);
        return ` (${label} line${lines.length > 1 ? 's' : ''} ${lines.slice(0, 10).join(', ')}${lines.length > 10 ? ', ...' : ''})`;
      };
      await checkTypesKnown(
        ctx,
        conn,
        jobs.map((j) => j.type),
        opts,
        linesOf,
      );
      const results: { line: number; result: EnqueueResult }[] = [];
      for (let i = 0; i < jobs.length; i += BATCH_SIZE) {
        const batch: JobLine[] = jobs.slice(i, i + BATCH_SIZE);
        const now = ctx.clock.now();
        try {
          const resolved = batch.map((j) =>
            resolveNewJob(j.type, j.params, j.options, defaultsFor(ctx, j.type), now),
          );
          const written = await enqueueMany(conn.store, resolved, now);
          written.forEach((result, k) => results.push({ line: batch[k]!.line, result }));
        } catch (err) {
          // Say exactly what was written, so a rerun can start at the right line.
          printResults(ctx, results);
          const first = batch[0]!.line;
          const last = batch[batch.length - 1]!.line;
          throw new Error(
            `${results.length} of ${jobs.length} jobs were enqueued (ids above${results.length ? `, up to line ${results[results.length - 1]!.line}` : ''}); ` +
              `the batch of lines ${first}-${last} failed and may be partly written, later lines were not: ${errorMessage(err)}`,
            { cause: err },
          );
        }
      }
      printResults(ctx, results);
    },
    { ensureIndexes: true },
  );
}

function printResults(ctx: CommandContext, results: { line: number; result: EnqueueResult }[]): void {
  const rows = results.map(({ line, result }) => ({
    line,
    id: result.job._id,
    created: result.created,
    state: result.job.state,
  }));
  ctx.printer.emit(rows, () =>
    rows
      .map((r) => (r.created ? r.id : `${r.id} (an unfinished job with this dedupe key already existed)`))
      .join('\n'),
  );
}

export const registerEnqueue: RegisterCommand = (program, env, result) => {
  program.addCommand(
    withCommonOptions(new Command('enqueue'))
      .description('add a job (or, with --file, many); prints its id')
      .argument('[type]', 'job type (not with --file)')
      .addOption(
        new Option('--params <json>', 'job parameters: a JSON object, @file.json, or @- for stdin').argParser(
          paramsOption,
        ),
      )
      .addOption(
        new Option('--file <ndjson>', 'enqueue one job per line of this file (- for stdin); see below'),
      )
      .addOption(
        new Option(
          '--allow-unknown-type',
          'enqueue a type that neither these settings nor a live daemon knows (a rolling deploy)',
        ),
      )
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
      .addOption(
        new Option('--depends-on <id>', 'wait until this job completed (repeatable)').argParser(
          (v: string, prev: string[] | undefined) => [...(prev ?? []), textOption(v)],
        ),
      )
      .addOption(
        new Option(
          '--on-dependency-failure <policy>',
          'when a dependency fails: fail (default), skip, ignore',
        ).choices(['fail', 'skip', 'ignore']),
      )
      .addOption(
        new Option(
          '--wait',
          'wait until the job finishes; exit 0 if it completed, 1 if it failed or was cancelled',
        ),
      )
      .addHelpText('after', HELP_AFTER)
      .action(async (type: string | undefined, opts: EnqueueFlags) => {
        const ctx = commandContext(opts, env);
        if (opts.file !== undefined) return enqueueFile(ctx, opts, type);
        if (type === undefined) {
          throw new ValidationError(
            `give a job type (jobctl enqueue echo --params '{"hello":"world"}'), or --file jobs.ndjson`,
          );
        }
        if (opts.delay !== undefined && opts.runAt !== undefined) {
          throw new ValidationError('--delay and --run-at cannot be used together; give one of them');
        }
        const params =
          opts.params === undefined
            ? {}
            : 'stdin' in opts.params
              ? await paramsFromStdin()
              : opts.params.params;
        const enqueueOptions: EnqueueOptions = {
          ...(opts.priority !== undefined ? { priority: opts.priority } : {}),
          ...(opts.delay !== undefined ? { delayMs: opts.delay } : {}),
          ...(opts.runAt !== undefined ? { runAt: opts.runAt } : {}),
          ...(opts.maxAttempts !== undefined ? { maxAttempts: opts.maxAttempts } : {}),
          ...(opts.timeout !== undefined ? { timeoutMs: opts.timeout } : {}),
          ...(opts.dedupeKey !== undefined ? { dedupeKey: opts.dedupeKey } : {}),
          ...(opts.dataset !== undefined ? { datasetUuid: opts.dataset } : {}),
          ...(opts.tag !== undefined ? { tags: opts.tag } : {}),
          ...(opts.dependsOn !== undefined ? { dependsOn: opts.dependsOn } : {}),
          ...(opts.onDependencyFailure !== undefined
            ? { onDependencyFailure: opts.onDependencyFailure }
            : {}),
        };
        await checkInputs([{ type, params }], ctx.config.jobTypes, ctx.config.dataDirs);
        await withConnection(
          ctx,
          async (conn) => {
            await checkTypesKnown(ctx, conn, [type], opts, () => '');
            const now = ctx.clock.now();
            const newJob = resolveNewJob(type, params, enqueueOptions, defaultsFor(ctx, type), now);
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
            // On a terminal, the same progress line as `jobctl watch`, redrawn in place.
            const live = !!process.stdout.isTTY && !ctx.printer.json;
            const tracker = new RateTracker();
            const done = await waitForFinish(conn.store, job._id, (j) => {
              if (!live) return;
              if (j.progress) tracker.add(Date.now(), j.progress.percent);
              process.stdout.write(`\r${progressLine(j, tracker)}\x1b[K`);
            });
            if (live) process.stdout.write('\n');
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
