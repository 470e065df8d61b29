import { Command, Option } from 'commander';
import {
  addSchedule,
  listSchedules,
  pauseSchedule,
  removeSchedule,
  resumeSchedule,
  showSchedule,
  triggerSchedule,
} from '../../schedules/operations.js';
import { checkScheduleName, validateSchedule, type ScheduleInput } from '../../schedules/spec.js';
import type { JobDefaults } from '../../store/index.js';
import type { ScheduleDoc } from '../../types.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommandContext,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { checkTypes, knownTypes } from '../knownTypes.js';
import { paramsFromStdin, paramsOption, type ParamsOption } from '../jobInput.js';
import { formatDate, formatMs, keyValues, table } from '../output.js';

const EXIT_HELP =
  '\nExit codes: 0 ok; 1 failure; 2 bad settings, flags or arguments (a bad cron expression, timezone or interval); 3 no schedule of that name.';

interface AddFlags extends CommonOptions {
  cron?: string;
  every?: string;
  timezone?: string;
  type?: string;
  params?: ParamsOption;
  priority?: string;
  catchUp?: string;
  catchUpMax?: string;
  allowUnknownType?: boolean;
}

/** A number where the text is one; the text itself otherwise, so validation names what was given. */
function numberOrText(v: string | undefined): unknown {
  if (v === undefined) return undefined;
  const n = Number(v.trim());
  return v.trim() !== '' && Number.isFinite(n) ? n : v;
}

function defaultsFor(ctx: CommandContext): (type: string) => JobDefaults {
  return (type) => {
    const t = ctx.config.jobTypes[type];
    return t
      ? { priority: t.priority, maxAttempts: t.maxAttempts, timeoutMs: t.timeoutMs }
      : { priority: ctx.config.defaults.priority };
  };
}

function timing(s: ScheduleDoc): string {
  if (s.cron !== undefined) return `cron ${s.cron}${s.timezone ? ` (${s.timezone})` : ' (UTC)'}`;
  return `every ${formatMs(s.everyMs)}`;
}

function describe(s: ScheduleDoc): string {
  return keyValues([
    ['name', s._id],
    ['when', timing(s)],
    ['type', s.type],
    ['params', s.params],
    ['priority', s.priority ?? "(the type's)"],
    ['state', s.paused ? 'paused' : 'active'],
    ['next fire', s.paused ? '(paused)' : formatDate(s.nextFireAt)],
    ['last fire', formatDate(s.lastFireAt)],
    ['catch-up', `${s.catchUp}${s.catchUp === 'all' ? ` (at most ${s.catchUpMax})` : ''}`],
    ['defined in', s.source],
    ['created', formatDate(s.createdAt)],
  ]);
}

function nameCommand(
  env: Parameters<RegisterCommand>[1],
  name: string,
  description: string,
  run: (ctx: CommandContext, store: Parameters<typeof listSchedules>[0], schedule: string) => Promise<void>,
  opts: { ensureIndexes?: boolean } = {},
): Command {
  return withCommonOptions(new Command(name))
    .description(description)
    .argument('<name>', 'schedule name')
    .addHelpText('after', EXIT_HELP)
    .action(async (schedule: string, _flags: CommonOptions, command: Command) => {
      const ctx = commandContext(command.optsWithGlobals<CommonOptions>(), env);
      await withConnection(ctx, (conn) => run(ctx, conn.store, schedule), opts);
    });
}

export const registerSchedule: RegisterCommand = (program, env) => {
  // The global options are accepted before or after the subcommand (the subcommands read them with
  // optsWithGlobals: commander hands an option the parent knows to the parent).
  const cmd = withCommonOptions(new Command('schedule')).description(
    'cron and interval schedules: each fire time creates exactly one job, however many daemons run',
  );

  cmd.addCommand(
    withCommonOptions(new Command('add'))
      .description('add a schedule (give --cron or --every)')
      .argument('<name>', 'schedule name: a letter, then letters, digits, _ . : -')
      .addOption(new Option('--cron <expr>', 'cron expression: 5 fields, or 6 with seconds first'))
      .addOption(new Option('--every <ms>', 'fixed interval in milliseconds (at least 1000)'))
      .addOption(new Option('--timezone <tz>', 'IANA timezone of the cron expression (default UTC)'))
      .addOption(new Option('--type <type>', 'job type of the jobs it creates').makeOptionMandatory())
      .addOption(
        new Option('--params <json>', 'job params: a JSON object, @file or @- (stdin)').argParser(
          paramsOption,
        ),
      )
      .addOption(new Option('--priority <n>', 'job priority, 1 (highest) to 100'))
      .addOption(
        new Option(
          '--catch-up <policy>',
          'fires missed while every daemon was down: skip, once or all',
        ).default(undefined, 'once'),
      )
      .addOption(
        new Option('--catch-up-max <n>', 'with --catch-up all: at most this many per missed stretch'),
      )
      .addOption(
        new Option('--allow-unknown-type', 'add it even though no settings or live daemon know the type'),
      )
      .addHelpText('after', EXIT_HELP)
      .action(async (name: string, _flags: AddFlags, command: Command) => {
        const flags = command.optsWithGlobals<AddFlags>();
        const ctx = commandContext(flags, env);
        const params = flags.params
          ? 'stdin' in flags.params
            ? await paramsFromStdin()
            : flags.params.params
          : undefined;
        const input: ScheduleInput = {
          ...(flags.cron !== undefined ? { cron: flags.cron } : {}),
          ...(flags.every !== undefined ? { everyMs: numberOrText(flags.every) } : {}),
          ...(flags.timezone !== undefined ? { timezone: flags.timezone } : {}),
          type: flags.type,
          ...(params !== undefined ? { params } : {}),
          ...(flags.priority !== undefined ? { priority: numberOrText(flags.priority) } : {}),
          ...(flags.catchUp !== undefined ? { catchUp: flags.catchUp } : {}),
          ...(flags.catchUpMax !== undefined ? { catchUpMax: numberOrText(flags.catchUpMax) } : {}),
        };
        // Refused before connecting: nothing is written for a bad definition.
        checkScheduleName(name);
        validateSchedule(input);
        await withConnection(ctx, async (conn) => {
          if (!flags.allowUnknownType) {
            checkTypes(
              [String(flags.type)],
              await knownTypes(ctx.config, conn.store, ctx.clock.now()),
              () => '',
            );
          }
          const s = await addSchedule(conn.store, name, input, {
            now: ctx.clock.now(),
            defaultsFor: defaultsFor(ctx),
          });
          ctx.printer.emit(s, () => `schedule ${s._id} added; next fire ${formatDate(s.nextFireAt)}`);
        });
      }),
  );

  cmd.addCommand(
    withCommonOptions(new Command('list'))
      .description('every schedule with its next fire time')
      .addHelpText('after', EXIT_HELP)
      .action(async (_flags: CommonOptions, command: Command) => {
        const ctx = commandContext(command.optsWithGlobals<CommonOptions>(), env);
        await withConnection(ctx, async (conn) => {
          const all = await listSchedules(conn.store);
          ctx.printer.emit(all, () =>
            all.length
              ? table(
                  ['name', 'when', 'type', 'next fire', 'last fire', 'state', 'catch-up'],
                  all.map((s) => [
                    s._id,
                    timing(s),
                    s.type,
                    s.paused ? '(paused)' : formatDate(s.nextFireAt),
                    formatDate(s.lastFireAt),
                    s.paused ? 'paused' : 'active',
                    s.catchUp,
                  ]),
                )
              : '(no schedules)',
          );
        });
      }),
  );

  cmd.addCommand(
    nameCommand(
      env,
      'show',
      'one schedule: its definition, next and last fire time',
      async (ctx, store, n) => {
        const s = await showSchedule(store, n);
        ctx.printer.emit(s, () => describe(s));
      },
    ),
  );
  cmd.addCommand(
    nameCommand(env, 'pause', 'stop creating jobs until resumed', async (ctx, store, n) => {
      const s = await pauseSchedule(store, n, ctx.clock.now());
      ctx.printer.emit(s, () => `schedule ${n} paused`);
    }),
  );
  cmd.addCommand(
    nameCommand(
      env,
      'resume',
      'create jobs again, from the next fire time after now (paused fire times are not made up)',
      async (ctx, store, n) => {
        const s = await resumeSchedule(store, n, ctx.clock.now());
        ctx.printer.emit(s, () => `schedule ${n} resumed; next fire ${formatDate(s.nextFireAt)}`);
      },
    ),
  );
  cmd.addCommand(
    nameCommand(env, 'remove', 'delete a schedule (the jobs it created stay)', async (ctx, store, n) => {
      await removeSchedule(store, n);
      ctx.printer.emit({ name: n, removed: true }, () => `schedule ${n} removed`);
    }),
  );
  cmd.addCommand(
    nameCommand(
      env,
      'trigger',
      "enqueue the schedule's job now, outside its series",
      async (ctx, store, n) => {
        const id = await triggerSchedule(store, n, {
          now: ctx.clock.now(),
          by: 'jobctl',
          defaultsFor: defaultsFor(ctx),
        });
        ctx.printer.emit({ name: n, jobId: id }, () => id);
      },
      { ensureIndexes: true },
    ),
  );
  program.addCommand(cmd);
};
