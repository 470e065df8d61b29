/**
 * The database no longer shows some of this daemon's leases (the jobs were rescued by another daemon
 * or cancelled): a job claimed ahead is dropped, a running job's child is stopped. Either way its
 * outcome will not be written (fencing).
 */
import type { JobId } from '../types.js';
import type { Executions } from './executions.js';
import type { OutcomeReporter } from './outcomes.js';
import type { Slots } from './slots.js';

export class LostLeases {
  constructor(
    private readonly slots: Slots,
    private readonly executions: Executions,
    private readonly outcomes: OutcomeReporter,
  ) {}

  handle(ids: JobId[]): void {
    for (const id of ids) {
      const waiting = this.slots.drop(id);
      if (waiting) {
        this.outcomes.lost(waiting, 'running', 'job lease lost before it started; nothing written');
        continue;
      }
      this.executions.abort(id, 'lost', 'lease lost');
    }
  }
}
