import { Command } from 'commander';
import { overview, unreachableOverview, VERDICT_EXIT_CODES, type Overview } from '../../monitor/overview.js';
import { JOB_STATES } from '../../types.js';
import { errorMessage } from '../common.js';
import { connectStore } from '../connect.js';
import { commandContext, withCommonOptions, type CommonOptions, type RegisterCommand } from '../context.js';
import { formatMs, keyValues, table } from '../output.js';

export const OVERVIEW_EXIT_CODES_HELP = `
Exit codes (for monitoring probes): 0 healthy; 5 warning; 6 critical (including an unreachable
database); 2 bad settings or flags.`;

function render(o: Overview): string {
  const lines = [
    `verdict: ${o.verdict.toUpperCase()}`,
    ...o.reasons.map((r) => `  ${r.level}: ${r.message}`),
    '',
    keyValues([
      ['workers alive / dead / stopped', `${o.workers.alive} / ${o.workers.dead} / ${o.workers.stopped}`],
      [
        'oldest due job',
        o.oldestQueued
          ? `${o.oldestQueued.id} (${o.oldestQueued.type}) waiting ${formatMs(o.oldestQueued.ageMs)}`
          : 'none',
      ],
      [
        'last hour',
        `${o.lastHour.completed} completed, ${o.lastHour.failed} failed, ${o.lastHour.cancelled} cancelled; failure rate ${o.lastHour.failureRate === null ? '-' : `${(o.lastHour.failureRate * 100).toFixed(1)}%`}`,
      ],
      ['stale running jobs', o.stale],
    ]),
  ];
  if (o.depth.byType.length > 0) {
    lines.push(
      '',
      table(
        ['type', 'queue', ...JOB_STATES],
        o.depth.byType.map((t) => [t.type, t.queue, ...JOB_STATES.map((s) => t.states[s])]),
      ),
    );
  }
  if (o.running.length > 0) {
    lines.push(
      '',
      table(
        ['running job', 'type', 'progress', 'message', 'worker', 'since'],
        o.running.map((j) => [
          j._id,
          j.type,
          j.progress ? `${j.progress.percent}%` : '',
          j.progress?.message ?? '',
          j.worker,
          j.startedAt,
        ]),
      ),
    );
  }
  return lines.join('\n');
}

export const registerOverview: RegisterCommand = (program, env, result) => {
  program.addCommand(
    withCommonOptions(new Command('overview'))
      .description(
        'queue depth, running jobs, workers, failure rate and a health verdict (exit code = verdict)',
      )
      .addHelpText('after', OVERVIEW_EXIT_CODES_HELP)
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        const now = ctx.clock.now();
        let conn;
        try {
          conn = await connectStore(ctx.config);
        } catch (err) {
          const o = unreachableOverview(ctx.config, now, `database unreachable: ${errorMessage(err)}`);
          ctx.printer.emit(o, () => `verdict: CRITICAL\n  critical: ${o.reasons[0]!.message}`);
          result.code = VERDICT_EXIT_CODES.critical;
          return;
        }
        try {
          const o = await overview(conn.store, ctx.config, now);
          ctx.printer.emit(o, () => render(o));
          result.code = VERDICT_EXIT_CODES[o.verdict];
        } catch (err) {
          const o = unreachableOverview(ctx.config, now, `database error: ${errorMessage(err)}`);
          ctx.printer.emit(o, () => `verdict: CRITICAL\n  critical: ${o.reasons[0]!.message}`);
          result.code = VERDICT_EXIT_CODES.critical;
        } finally {
          await conn.close();
        }
      }),
  );
};
