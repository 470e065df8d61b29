/**
 * Tells the dependents, workflows and parents of the jobs this daemon just settled, right after their
 * outcomes land (and before the next batch is written), and wakes the claim loop when it released
 * something. A failure here is only logged: the jobs keep `releasePending` and the releaser sweep
 * repeats the release within one period.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import {
  needsNoRelease,
  releaseAfter,
  settlementTarget,
  type ReleaseResult,
  type Settlement,
  type Store,
} from '../store/index.js';
import type { JobId } from '../types.js';
import type { DbHealth } from './dbHealth.js';
import type { DaemonEvents, TypedEmitter } from './events.js';
import type { Wakeup } from './wakeup.js';

/** Emit the typed events of a release (shared with the releaser sweep). */
export function emitReleaseEvents(events: TypedEmitter<DaemonEvents>, r: ReleaseResult): void {
  for (const id of r.released) events.emit('job:released', { jobId: id });
  for (const x of r.depfailed) {
    events.emit('job:dependency-failed', {
      jobId: x.id,
      dependency: x.dependency,
      state: 'failed',
      code: x.code,
    });
  }
  for (const x of r.depskipped) {
    events.emit('job:dependency-failed', {
      jobId: x.id,
      dependency: x.dependency,
      state: 'cancelled',
      code: 'JOBD_DEPENDENCY_SKIPPED',
    });
  }
  for (const id of r.cascaded) events.emit('job:cascade-cancelled', { jobId: id });
  for (const w of r.workflows) {
    events.emit(w.state === 'completed' ? 'workflow:completed' : 'workflow:failed', { workflowId: w.id });
  }
}

export class Releases {
  /** Finished or suspended jobs waiting for the next release pass. */
  private pending: Settlement[] = [];
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly o: {
      store: Store;
      clock: Clock;
      events: TypedEmitter<DaemonEvents>;
      wakeup: Wakeup;
      health: DbHealth;
      logger: Logger;
    },
  ) {}

  /**
   * Settlements that landed: those that finished a job or suspended one are released. One pass runs
   * at a time, beside the settler (which does not wait for it); what lands meanwhile goes into the
   * next pass together, so a busy daemon releases in large batches and an idle one at once.
   */
  afterLanded(landed: Settlement[]): Promise<void> {
    for (const s of landed) {
      if (needsNoRelease(s)) continue;
      const to = settlementTarget(s);
      if (to === 'completed' || to === 'failed' || to === 'waiting') this.pending.push(s);
    }
    this.kick();
    return Promise.resolve();
  }

  /** Resolves when no release pass is running or waiting (shutdown). */
  async idle(): Promise<void> {
    while (this.inFlight) await this.inFlight;
  }

  private kick(): void {
    if (this.inFlight || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    this.inFlight = this.pass(batch).finally(() => {
      this.inFlight = null;
      this.kick();
    });
  }

  private async pass(batch: Settlement[]): Promise<void> {
    const ids: JobId[] = [];
    const known: { id: JobId; state: 'completed' | 'failed'; workflowId?: string | null }[] = [];
    for (const s of batch) {
      const to = settlementTarget(s);
      if (to === 'completed' || to === 'failed') {
        known.push({ id: s.jobId, state: to, workflowId: s.workflowId ?? null });
      }
      ids.push(s.jobId);
    }
    try {
      const r = await releaseAfter(this.o.store, ids, this.o.clock.now(), {
        onReleased: () => this.o.wakeup.wake(),
        ...(known.length === ids.length ? { known } : {}),
      });
      emitReleaseEvents(this.o.events, r);
      this.o.health.ok('release');
    } catch (err) {
      // The jobs keep releasePending: the releaser sweep repeats this within one period.
      this.o.health.error('release', err);
    }
  }
}
