/**
 * The overview behind `jobctl overview` (and the HTTP API): queue depth, running jobs, workers, the
 * oldest due job, the last hour's failure rate, stale jobs, and a health verdict with its reasons.
 */
import type { ResolvedConfig } from '../config/types.js';
import {
  depthByTypeState,
  finishedSince,
  listWorkers,
  oldestDue,
  runningJobs,
  staleJobs,
  unservedTypes,
  type RunningJob,
  type Store,
  type UnservedType,
} from '../store/index.js';
import { JOB_STATES, type JobState } from '../types.js';

export type Verdict = 'healthy' | 'warning' | 'critical';

export interface HealthReason {
  level: 'warning' | 'critical';
  code:
    | 'database-unreachable'
    | 'no-live-worker'
    | 'unserved-types'
    | 'oldest-queued'
    | 'failure-rate'
    | 'stale-jobs';
  message: string;
}

export interface Overview {
  at: Date;
  verdict: Verdict;
  reasons: HealthReason[];
  thresholds: ResolvedConfig['monitor'];
  depth: {
    byState: Record<JobState, number>;
    byType: { type: string; queue: string; states: Record<JobState, number> }[];
    byQueue: { queue: string; states: Record<JobState, number> }[];
  };
  running: (RunningJob & { worker: string | null })[];
  workers: {
    alive: number;
    dead: number;
    stopped: number;
    list: {
      id: string;
      host: string;
      pid: number;
      state: string;
      dead: boolean;
      heartbeatAt: Date;
      running: number;
    }[];
  };
  oldestQueued: { id: string; type: string; ageMs: number } | null;
  lastHour: { completed: number; failed: number; cancelled: number; failureRate: number | null };
  stale: number;
  unserved: UnservedType[];
}

/** The exit code of `jobctl overview` for each verdict (documented in its --help and docs/operations.md). */
export const VERDICT_EXIT_CODES: Record<Verdict, number> = { healthy: 0, warning: 5, critical: 6 };

const HOUR_MS = 3_600_000;

function zeroStates(): Record<JobState, number> {
  return Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
}

/** A job type's queue: its `queue` setting where it has one, else its own name. */
export function queueOf(config: ResolvedConfig, type: string): string {
  const def = config.jobTypes[type] as { queue?: string } | undefined;
  return def?.queue ?? type;
}

export async function overview(store: Store, config: ResolvedConfig, now: Date): Promise<Overview> {
  const m = config.monitor;
  const [depthRows, running, workers, oldest, lastHour, stale, unserved] = await Promise.all([
    depthByTypeState(store),
    runningJobs(store, { limit: 50 }),
    listWorkers(store, { now, leaseMs: config.worker.leaseMs }),
    oldestDue(store, now),
    finishedSince(store, new Date(now.getTime() - HOUR_MS)),
    staleJobs(store, { now, progressStaleMs: m.staleProgressMs, limit: 1000 }),
    unservedTypes(store, { now, leaseMs: config.worker.leaseMs }),
  ]);

  const byState = zeroStates();
  const types = new Map<string, Record<JobState, number>>();
  const queues = new Map<string, Record<JobState, number>>();
  for (const r of depthRows) {
    byState[r.state] = (byState[r.state] ?? 0) + r.count;
    const t = types.get(r.type) ?? zeroStates();
    t[r.state] += r.count;
    types.set(r.type, t);
    const qn = queueOf(config, r.type);
    const q = queues.get(qn) ?? zeroStates();
    q[r.state] += r.count;
    queues.set(qn, q);
  }

  const alive = workers.filter((w) => w.state !== 'stopped' && !w.dead);
  const dead = workers.filter((w) => w.dead);
  const finished = lastHour.completed + lastHour.failed;
  const failureRate = finished === 0 ? null : lastHour.failed / finished;
  const oldestQueued = oldest
    ? { id: oldest._id, type: oldest.type, ageMs: Math.max(0, now.getTime() - oldest.dueSince.getTime()) }
    : null;

  const reasons: HealthReason[] = [];
  const claimable = byState.queued + byState.retrying;
  if (alive.length === 0 && claimable > 0) {
    reasons.push({
      level: 'critical',
      code: 'no-live-worker',
      message: `${claimable} job(s) queued or retrying and no live daemon${dead.length ? ` (${dead.length} dead)` : ''}`,
    });
  } else if (unserved.length > 0 && oldestQueued) {
    reasons.push({
      level: 'warning',
      code: 'unserved-types',
      message: `no live daemon runs ${unserved.map((u) => `${u.type} (${u.queued + u.retrying})`).join(', ')}`,
    });
  }
  if (oldestQueued && oldestQueued.ageMs >= m.oldestQueuedWarnMs) {
    const critical = oldestQueued.ageMs >= m.oldestQueuedCriticalMs;
    reasons.push({
      level: critical ? 'critical' : 'warning',
      code: 'oldest-queued',
      message: `job ${oldestQueued.id} (${oldestQueued.type}) has been due for ${Math.round(oldestQueued.ageMs / 1000)} s (threshold ${Math.round((critical ? m.oldestQueuedCriticalMs : m.oldestQueuedWarnMs) / 1000)} s)`,
    });
  }
  if (failureRate !== null && finished >= m.failureRateMinJobs && failureRate >= m.failureRateWarn) {
    const critical = failureRate >= m.failureRateCritical;
    reasons.push({
      level: critical ? 'critical' : 'warning',
      code: 'failure-rate',
      message: `${(failureRate * 100).toFixed(1)}% of the ${finished} jobs finished in the last hour failed (threshold ${((critical ? m.failureRateCritical : m.failureRateWarn) * 100).toFixed(0)}%)`,
    });
  }
  if (stale.length > 0) {
    reasons.push({
      level: 'warning',
      code: 'stale-jobs',
      message: `${stale.length} running job(s) stale (lease expired or no progress for ${Math.round(m.staleProgressMs / 1000)} s): see jobctl stale`,
    });
  }

  return {
    at: now,
    verdict: verdictOf(reasons),
    reasons,
    thresholds: m,
    depth: {
      byState,
      byType: [...types].map(([type, states]) => ({ type, queue: queueOf(config, type), states })),
      byQueue: [...queues].sort(([a], [b]) => (a < b ? -1 : 1)).map(([queue, states]) => ({ queue, states })),
    },
    running: running.map((j) => ({ ...j, worker: j.lease?.owner ?? null })),
    workers: {
      alive: alive.length,
      dead: dead.length,
      stopped: workers.filter((w) => w.state === 'stopped').length,
      list: workers.map((w) => ({
        id: w._id,
        host: w.host,
        pid: w.pid,
        state: w.state,
        dead: w.dead,
        heartbeatAt: w.heartbeatAt,
        running: w.running.length,
      })),
    },
    oldestQueued,
    lastHour: { ...lastHour, failureRate },
    stale: stale.length,
    unserved,
  };
}

export function verdictOf(reasons: readonly HealthReason[]): Verdict {
  if (reasons.some((r) => r.level === 'critical')) return 'critical';
  return reasons.length > 0 ? 'warning' : 'healthy';
}

/** What `overview` reports when the database cannot be reached. */
export function unreachableOverview(config: ResolvedConfig, now: Date, error: string) {
  return {
    at: now,
    verdict: 'critical' as const,
    reasons: [{ level: 'critical' as const, code: 'database-unreachable' as const, message: error }],
    thresholds: config.monitor,
  };
}
