/**
 * Catches releases that were missed: a job that finished (or suspended) keeps `releasePending` until
 * its dependents, workflow and parent were told. If the daemon that settled it died first (SIGKILL
 * between the settle and the release), this sweep repeats the release at most one period later. It
 * also finishes or abandons workflows whose submitter died mid-submit. Safe on many daemons at once:
 * releaseAfter is idempotent and every write it makes is guarded.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { Periodic } from '../periodic.js';
import {
  markOlderDependents,
  releaseAfter,
  sweepSubmitting,
  type ReleaseResult,
  type Store,
} from '../store/index.js';

export interface ReleaserOptions {
  intervalMs: number;
  clock: Clock;
  logger?: Logger;
  onReleased?(r: ReleaseResult): void;
  onWorkflows?(w: { started: string[]; abandoned: string[] }): void;
  onError?(err: unknown): void;
  onOk?(): void;
}

/** Jobs handled per release call. */
const CHUNK = 500;
/** A submit is given this many periods (at least a minute) before it counts as abandoned. */
const SUBMIT_GRACE_MIN_MS = 60_000;

export class Releaser {
  readonly name = 'releaser';
  private readonly loop: Periodic;

  constructor(
    private readonly store: Store,
    private readonly o: ReleaserOptions,
  ) {
    this.loop = new Periodic(
      o.intervalMs,
      () => this.runOnce(),
      (err) => this.o.onError?.(err),
    );
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** One pass: every release older than one period, then interrupted submits. */
  async runOnce(): Promise<void> {
    const now = this.o.clock.now();
    const olderThan = new Date(now.getTime() - this.o.intervalMs);
    let after: string | null = null;
    for (;;) {
      const filter: Record<string, unknown> = { releasePending: true, updatedAt: { $lt: olderThan } };
      if (after) filter._id = { $gt: after };
      const ids = (
        await this.store.jobs
          .find(filter, { projection: { _id: 1 }, sort: { _id: 1 }, limit: CHUNK })
          .toArray()
      ).map((d) => d._id);
      if (ids.length === 0) break;
      const r = await releaseAfter(this.store, ids, this.o.clock.now());
      const n = r.released.length + r.depfailed.length + r.depskipped.length + r.cascaded.length;
      if (n > 0)
        this.o.logger?.warn(
          { released: r.released.length, jobs: ids.length },
          'released jobs whose release was missed',
        );
      this.o.onReleased?.(r);
      if (ids.length < CHUNK) break;
      after = ids[ids.length - 1]!;
    }
    // Dependents written by older versions, whose dependencies do not know of them.
    const older = await markOlderDependents(this.store, this.o.clock.now());
    if (older) this.o.onReleased?.(older);
    const grace = Math.max(SUBMIT_GRACE_MIN_MS, 2 * this.o.intervalMs);
    const w = await sweepSubmitting(this.store, new Date(now.getTime() - grace), this.o.clock.now());
    if (w.started.length + w.abandoned.length > 0) {
      this.o.logger?.warn(w, 'finished or abandoned workflows whose submit was interrupted');
      this.o.onWorkflows?.(w);
    }
    this.o.onOk?.();
  }
}
