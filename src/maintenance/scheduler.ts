/**
 * The scheduler: turns due schedule fires into jobs. Runs on every daemon; wakes at the earliest
 * nextFireAt of any schedule (and at least every pollMs, to see schedules other processes added).
 * Safe on many daemons at once: a fire's job is unique by fireKey and nextFireAt moves by
 * compare-and-set (src/store/schedules.ts), so each fire time makes exactly one job.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { Periodic } from '../periodic.js';
import { planFires } from '../schedules/plan.js';
import { fireSeries } from '../schedules/spec.js';
import {
  dueSchedules,
  earliestFireAt,
  fireSchedule,
  resolveNewJob,
  upSpans,
  type FiredJob,
  type JobDefaults,
  type Store,
} from '../store/index.js';
import type { ScheduleDoc } from '../types.js';

export interface SchedulerOptions {
  clock: Clock;
  /** Longest sleep between passes. */
  pollMs: number;
  /** A daemon whose heartbeat is older than this is taken for dead (its up span ends at that heartbeat). */
  aliveWithinMs: number;
  /** Recorded on the job events. */
  workerId: string;
  /** Defaults for a job of `type` (priority, maxAttempts, timeoutMs), as jobctl enqueue gives them. */
  defaultsFor(type: string): JobDefaults;
  logger?: Logger;
  onFired?(schedule: ScheduleDoc, jobs: FiredJob[]): void;
  onError?(err: unknown): void;
  onOk?(): void;
}

/** Schedules handled per pass, and jobs created per schedule per pass; the rest follow at once. */
const DUE_BATCH = 50;
const FIRES_PER_PASS = 500;
/** Shortest sleep: a fire time is met within this. */
const MIN_SLEEP_MS = 10;

export class Scheduler {
  readonly name = 'scheduler';
  private readonly loop: Periodic;
  private sleepMs = 0;

  constructor(
    private readonly store: Store,
    private readonly o: SchedulerOptions,
  ) {
    this.loop = new Periodic(
      () => this.sleepMs,
      () => this.runOnce(),
      (err) => {
        this.sleepMs = Math.min(1_000, o.pollMs);
        o.onError?.(err);
      },
    );
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** One pass: fire every due schedule, then sleep until the next fire time. Returns the jobs created. */
  async runOnce(): Promise<FiredJob[]> {
    const now = this.o.clock.now();
    const due = await dueSchedules(this.store, now, DUE_BATCH);
    const all: FiredJob[] = [];
    let more = due.length === DUE_BATCH;
    if (due.length) {
      const from = new Date(Math.min(...due.map((s) => s.nextFireAt.getTime())));
      const up = await upSpans(this.store, { from, now, aliveWithinMs: this.o.aliveWithinMs });
      for (const s of due) {
        const r = await this.fire(s, now, up);
        all.push(...r.created);
        more ||= r.more;
      }
    }
    this.o.onOk?.();
    if (more) {
      this.sleepMs = 0;
    } else {
      const next = await earliestFireAt(this.store);
      const wait = next ? next.getTime() - this.o.clock.now().getTime() : this.o.pollMs;
      this.sleepMs = Math.max(MIN_SLEEP_MS, Math.min(this.o.pollMs, wait));
    }
    return all;
  }

  private async fire(
    s: ScheduleDoc,
    now: Date,
    up: { from: number; to: number }[],
  ): Promise<{ created: FiredJob[]; more: boolean }> {
    const plan = planFires({
      series: fireSeries(s, s.nextFireAt),
      nextFireAt: s.nextFireAt,
      now,
      up,
      catchUp: s.catchUp,
      catchUpMax: s.catchUpMax,
      limit: FIRES_PER_PASS,
    });
    const defaults = this.o.defaultsFor(s.type);
    const { created, advanced } = await fireSchedule(this.store, {
      name: s._id,
      expected: s.nextFireAt,
      next: plan.nextFireAt,
      fires: plan.fires,
      job: () =>
        resolveNewJob(
          s.type,
          s.params,
          s.priority !== undefined ? { priority: s.priority } : {},
          defaults,
          now,
        ),
      now,
      by: this.o.workerId,
    });
    if (created.length) {
      this.o.logger?.info(
        {
          schedule: s._id,
          jobs: created.map((c) => ({ jobId: c.jobId, fireAt: c.at, catchUp: c.catchUp })),
          ...(plan.skipped ? { skippedMissedFires: plan.skipped } : {}),
        },
        'schedule fired',
      );
      this.o.onFired?.(s, created);
    } else if (plan.skipped && advanced) {
      this.o.logger?.info(
        { schedule: s._id, skippedMissedFires: plan.skipped },
        'schedule skipped missed fires',
      );
    }
    return { created, more: advanced && plan.nextFireAt.getTime() <= now.getTime() };
  }
}
