/**
 * The scheduler: turns due schedule fires into jobs. Runs on every daemon; wakes at the earliest
 * nextFireAt of any schedule, on every schedule write its change stream reports (a schedule another
 * process added, resumed or edited), and at least every pollMs where no change stream is ready
 * (STREAM_SAFETY_MS where one is). An idle pass is one query: the earliest active fire time.
 * Safe on many daemons at once: a fire's job is unique by fireKey and nextFireAt moves by
 * compare-and-set (src/store/schedules.ts), so each fire time makes exactly one job.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { Periodic, pollInterval } from '../periodic.js';
import { planFires } from '../schedules/plan.js';
import { fireSeries } from '../schedules/spec.js';
import {
  dueSchedules,
  earliestFireAt,
  fireSchedule,
  resolveNewJob,
  upSpans,
  watchSchedules,
  type FiredJob,
  type JobDefaults,
  type Store,
} from '../store/index.js';
import type { ScheduleDoc } from '../types.js';
import { StreamWatch } from './streamWatch.js';

export interface SchedulerOptions {
  clock: Clock;
  /** Longest sleep between passes where no change stream on the schedules is ready. */
  pollMs: number;
  /** worker.changeStreams: watch the schedules collection where the server offers change streams. */
  changeStreams: boolean;
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
  /** What the last pass left: run again at once, the next fire time (null: none), or a failed pass. */
  private next: 'now' | 'failed' | Date | null = 'now';
  /** Every schedule write wakes a pass; while it is ready the timer is a safety net. */
  private readonly watch: StreamWatch<null>;

  constructor(
    private readonly store: Store,
    private readonly o: SchedulerOptions,
  ) {
    this.loop = new Periodic(
      () => this.sleepMs(),
      () => this.runOnce(),
      (err) => {
        this.next = 'failed';
        o.onError?.(err);
      },
    );
    this.watch = new StreamWatch({
      name: 'schedules watch',
      open: (h) => watchSchedules(store, h),
      wake: () => this.loop.wake(),
      ...(o.logger ? { logger: o.logger } : {}),
    });
  }

  start(): void {
    this.loop.start();
    if (this.o.changeStreams) this.watch.start();
  }

  async stop(): Promise<void> {
    await this.watch.stop();
    await this.loop.stop();
  }

  /** Asked after each pass, so a stream that became ready or failed since counts. */
  private sleepMs(): number {
    const next = this.next;
    if (next === 'now') return 0;
    if (next === 'failed') return Math.min(1_000, this.o.pollMs);
    const bound = pollInterval(this.o.pollMs, this.watch.ready);
    const wait = next ? next.getTime() - this.o.clock.now().getTime() : bound;
    return Math.max(MIN_SLEEP_MS, Math.min(bound, wait));
  }

  /**
   * One pass: the earliest active fire time (the only query while none is due); when it has come,
   * fire every due schedule and read the next one. Returns the jobs created.
   */
  async runOnce(): Promise<FiredJob[]> {
    const now = this.o.clock.now();
    const earliest = await earliestFireAt(this.store);
    const all: FiredJob[] = [];
    if (earliest === null || earliest.getTime() > now.getTime()) {
      this.next = earliest;
      this.o.onOk?.();
      return all;
    }
    const due = await dueSchedules(this.store, now, DUE_BATCH);
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
    this.next = more ? 'now' : await earliestFireAt(this.store);
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
