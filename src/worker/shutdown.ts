/**
 * A graceful stop, in order: stop claiming (and the change stream and maintenance), give back the
 * jobs claimed ahead, let running jobs finish within the grace period, then stop the rest (they are
 * requeued with the attempt given back), write every outcome, and close the database last.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { EmbeddedServer } from '../embeddedLoader.js';
import type { Maintenance } from '../maintenance/maintenance.js';
import type { Sandbox } from '../sandbox/types.js';
import { markWorkerStopped, type Settlement, type Store } from '../store/index.js';
import type { ClaimLoop } from './claimLoop.js';
import type { ClaimWatch } from './claimWatch.js';
import type { DbHealth } from './dbHealth.js';
import type { Executions } from './executions.js';
import type { LeaseKeeper } from './leaseKeeper.js';
import type { OutcomeReporter } from './outcomes.js';
import type { Settler } from './settler.js';
import type { Slots } from './slots.js';

/** The grace period of a stop, which a later stop() may cut short. */
export class Grace {
  private cut = false;
  private end: (() => void) | null = null;

  /** Ends the grace period early; a cut before the period began makes it zero. */
  cutAfter(ms: number): void {
    setTimeout(
      () => {
        this.cut = true;
        this.end?.();
      },
      Math.max(0, ms),
    ).unref();
  }

  /** Resolves when `done` resolves, graceMs pass, or the grace is cut. */
  async race(done: Promise<void>, graceMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      done,
      new Promise<void>((r) => {
        if (this.cut) return r();
        timer = setTimeout(r, graceMs);
        this.end = r;
      }),
    ]);
    clearTimeout(timer);
    this.end = null;
  }
}

export interface ShutdownParts {
  workerId: string;
  logger: Logger;
  clock: Clock;
  store: Store;
  health: DbHealth;
  watch: ClaimWatch;
  claimLoop: ClaimLoop;
  maintenance: Maintenance;
  slots: Slots;
  executions: Executions;
  settler: Settler;
  /** Release passes still running finish before the store closes (what they miss, the sweep does). */
  releases?: { idle(): Promise<void> };
  leaseKeeper: LeaseKeeper;
  outcomes: OutcomeReporter;
  /** Closed at the end when the daemon created it. */
  ownSandbox: Sandbox | null;
  embedded: EmbeddedServer | null;
  /** How long outcomes may take to be written at the end. */
  drainMs: number;
}

/** Runs the stop; resolves with how many running jobs were requeued because the grace period passed. */
export async function shutdown(p: ShutdownParts, graceMs: number, grace: Grace): Promise<number> {
  p.slots.close();
  await Promise.all([p.watch.close(), p.maintenance.stop(), p.claimLoop.stop()]);
  giveBackClaimedAhead(p);
  await grace.race(p.executions.idle(), graceMs);
  const requeueBefore = p.outcomes.counters.requeued;
  if (p.executions.runningCount > 0) {
    p.logger.warn({ jobs: p.executions.runningIds() }, 'shutdown grace passed; stopping running jobs');
    p.executions.abortAll('shutdown', 'jobd is shutting down');
    await p.executions.idle();
  }
  const unwritten = await p.settler.drain(p.drainMs);
  if (unwritten > 0)
    p.logger.error({ unwritten }, 'outcomes not written before exit; the rescuer will recover those jobs');
  await p.releases?.idle();
  await p.leaseKeeper.stop();
  try {
    await markWorkerStopped(p.store, p.workerId, p.clock.now(), true);
  } catch (err) {
    p.health.error('worker-stop', err);
  }
  await p.ownSandbox?.close().catch(() => {});
  await p.store.close().catch(() => {});
  await p.embedded?.close().catch(() => {});
  return p.outcomes.counters.requeued - requeueBefore;
}

/** Jobs claimed ahead never started: back to queued, with the attempt given back. */
function giveBackClaimedAhead(p: ShutdownParts): void {
  const jobs = p.slots.takeWaiting();
  for (const job of jobs) {
    const s: Settlement = {
      kind: 'requeue',
      jobId: job._id,
      token: job.lease!.token,
      attempt: job.attempts,
      seq: job.seq,
      message: 'claimed ahead but not started before shutdown; requeued with the attempt given back',
    };
    p.settler.add(s, (status) => {
      if (status !== 'landed')
        p.logger.warn({ jobId: job._id }, 'lease of a job claimed ahead was lost before it was given back');
    });
  }
  if (jobs.length > 0) p.logger.info({ jobs: jobs.length }, 'jobs claimed ahead given back');
}
