/**
 * Reports what happened to each job this daemon ran: a log line, a typed event and a counter for
 * every start, every outcome written, and every lease found lost (nothing written).
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { settlementTarget, type Settlement } from '../store/index.js';
import type { JobDoc } from '../types.js';
import type { DaemonEvents, TypedEmitter } from './events.js';
import type { Wakeup } from './wakeup.js';

export interface OutcomeCounters {
  claimed: number;
  completed: number;
  failed: number;
  retried: number;
  lost: number;
  requeued: number;
  suspended: number;
}

export type LostStage = DaemonEvents['job:lost']['stage'];

export class OutcomeReporter {
  readonly counters: OutcomeCounters = {
    claimed: 0,
    completed: 0,
    failed: 0,
    retried: 0,
    lost: 0,
    requeued: 0,
    suspended: 0,
  };

  constructor(
    private readonly o: {
      logger: Logger;
      events: TypedEmitter<DaemonEvents>;
      clock: Clock;
      /** Woken for the retry time of a job that will run again. */
      wakeup: Wakeup;
    },
  ) {}

  started(job: JobDoc): void {
    this.counters.claimed++;
    // Per job on the hot path: build log lines and event payloads only when someone reads them.
    const { logger, events } = this.o;
    if (logger.isLevelEnabled('debug')) {
      logger.debug({ jobId: job._id, type: job.type, attempt: job.attempts }, 'job claimed');
    }
    if (events.has('job:claimed')) {
      events.emit('job:claimed', { jobId: job._id, type: job.type, attempt: job.attempts, job });
    }
  }

  /** The settlement landed: the job is in its new state. */
  settled(job: JobDoc, s: Settlement): void {
    const { logger, events } = this.o;
    const ref = { jobId: job._id, type: job.type, attempt: job.attempts };
    const to = settlementTarget(s);
    for (const h of s.hookErrors ?? []) {
      const { hook, attempt: _a, at: _t, ...error } = h;
      logger.warn({ ...ref, hook, error: error.message, code: error.code }, 'job hook failed');
      events.emit('hook:failed', { ...ref, hook, error });
    }
    if (s.kind === 'complete') {
      this.counters.completed++;
      if (logger.isLevelEnabled('info'))
        logger.info({ ...ref, wallMs: s.resources?.wallMs }, 'job completed');
      if (events.has('job:completed')) events.emit('job:completed', { ...ref, result: s.result });
    } else if (s.kind === 'suspend') {
      this.counters.suspended++;
      logger.info({ ...ref, children: s.children.length }, 'job waits for its children');
      events.emit('job:suspended', { ...ref, children: s.children });
    } else if (s.kind === 'requeue') {
      this.counters.requeued++;
      logger.info(ref, 'job requeued');
      events.emit('job:requeued', ref);
    } else if (to === 'retrying' && s.retryAt) {
      this.counters.retried++;
      const now = this.o.clock.now().getTime();
      const delayMs = s.delayMs ?? s.retryAt.getTime() - now;
      logger.info({ ...ref, error: s.error.message, code: s.error.code, runAt: s.retryAt }, 'job retrying');
      events.emit('job:retrying', { ...ref, error: s.error, runAt: s.retryAt, delayMs });
      this.o.wakeup.at(s.retryAt.getTime(), now);
    } else {
      this.counters.failed++;
      logger.info({ ...ref, error: s.error.message, code: s.error.code, name: s.error.name }, 'job failed');
      events.emit('job:failed', { ...ref, error: s.error });
    }
  }

  /** The lease was gone: nothing was written for this job. */
  lost(job: JobDoc, stage: LostStage, message = 'job lease lost; nothing written'): void {
    this.counters.lost++;
    const ref = { jobId: job._id, type: job.type, attempt: job.attempts };
    this.o.logger.warn({ ...ref, stage }, message);
    this.o.events.emit('job:lost', { ...ref, stage });
  }
}
