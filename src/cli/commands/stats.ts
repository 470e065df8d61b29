import { Command } from 'commander';
import { jobStats } from '../../store/index.js';
import type { Store } from '../../store/types.js';
import { JOB_STATES, type JobState } from '../../types.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatMs, table } from '../output.js';

const HOUR_MS = 60 * 60_000;

interface TypeStats {
  type: string;
  states: Record<JobState, number>;
  total: number;
  /** Jobs that finished in the last hour, by outcome. */
  lastHour: { completed: number; failed: number; cancelled: number; perMinute: number };
  /** Average wall time of the jobs completed in the last hour, ms (null when none). */
  avgWallMs: number | null;
}

async function collect(store: Store, now: Date): Promise<TypeStats[]> {
  const rows = await jobStats(store, { since: new Date(now.getTime() - HOUR_MS) });
  const out = new Map<string, TypeStats>();
  const entry = (type: string): TypeStats => {
    let e = out.get(type);
    if (!e) {
      e = {
        type,
        states: Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>,
        total: 0,
        lastHour: { completed: 0, failed: 0, cancelled: 0, perMinute: 0 },
        avgWallMs: null,
      };
      out.set(type, e);
    }
    return e;
  };
  for (const r of rows) {
    const e = entry(r.type);
    if (r.state in e.states) e.states[r.state] += r.count;
    e.total += r.count;
    if (r.state === 'completed') {
      e.lastHour.completed += r.finishedSince;
      e.avgWallMs = r.avgWallMsSince === null ? null : Math.round(r.avgWallMsSince);
    } else if (r.state === 'failed') e.lastHour.failed += r.finishedSince;
    else if (r.state === 'cancelled') e.lastHour.cancelled += r.finishedSince;
  }
  for (const e of out.values()) {
    e.lastHour.perMinute = Number(((e.lastHour.completed + e.lastHour.failed) / 60).toFixed(2));
  }
  return [...out.values()].sort((a, b) => a.type.localeCompare(b.type));
}

export const registerStats: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('stats'))
      .description('jobs by type and state, throughput over the last hour, average wall time')
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const now = ctx.clock.now();
          const types = await collect(conn.store, now);
          ctx.printer.emit({ at: now, windowMs: HOUR_MS, types }, () =>
            types.length === 0
              ? 'no jobs'
              : table(
                  ['type', ...JOB_STATES, 'total', 'done/h', 'failed/h', 'per min', 'avg wall'],
                  types.map((t) => [
                    t.type,
                    ...JOB_STATES.map((s) => t.states[s]),
                    t.total,
                    t.lastHour.completed,
                    t.lastHour.failed,
                    t.lastHour.perMinute,
                    formatMs(t.avgWallMs),
                  ]),
                ),
          );
        });
      }),
  );
};
