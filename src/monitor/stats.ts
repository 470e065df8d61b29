/** Jobs by type and state, with the last hour's throughput: what `jobctl stats` and the HTTP API show. */
import { jobStats } from '../store/index.js';
import type { Store } from '../store/types.js';
import { JOB_STATES, type JobState } from '../types.js';

export const HOUR_MS = 60 * 60_000;

export interface TypeStats {
  type: string;
  states: Record<JobState, number>;
  total: number;
  /** Jobs that finished in the last hour, by outcome. */
  lastHour: { completed: number; failed: number; cancelled: number; perMinute: number };
  /** Average wall time of the jobs completed in the last hour, ms (null when none). */
  avgWallMs: number | null;
}

/** One row per job type, sorted by type. */
export async function typeStats(store: Store, now: Date): Promise<TypeStats[]> {
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
