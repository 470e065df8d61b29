/**
 * The database no longer shows some of this daemon's leases (the jobs were rescued by another daemon
 * or cancelled): a job claimed ahead is dropped, a running job's child is stopped. Either way its
 * outcome will not be written (fencing).
 */
import type { HeldLease } from '../store/index.js';
import type { Executions } from './executions.js';
import type { OutcomeReporter } from './outcomes.js';
import type { Slots } from './slots.js';

export class LostLeases {
  constructor(
    private readonly slots: Slots,
    private readonly executions: Executions,
    private readonly outcomes: OutcomeReporter,
  ) {}

  /**
   * Only the holder of a lost token is stopped: the same job may be held here under a newer lease (its
   * earlier attempt settled as a requeue, and it was claimed again before that settlement was done).
   */
  handle(leases: HeldLease[]): void {
    for (const { jobId, token } of leases) {
      const waiting = this.slots.drop(jobId, token);
      if (waiting) {
        this.outcomes.lost(waiting, 'running', 'job lease lost before it started; nothing written');
        continue;
      }
      this.executions.abort(jobId, 'lost', 'lease lost', token);
    }
  }
}
