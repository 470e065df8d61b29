/**
 * Moves each dataset's `status` along the legacy transitions as its jobs change state
 * (docs/datasets.md). Runs on every daemon, woken by a change stream on job transitions where the
 * server offers one (and then every STREAM_SAFETY_MS as a safety net), else every
 * `datasets.statusPollMs`. While no dataset job is unfinished the stream watches only what can make
 * one unfinished (an insert with a datasetUuid, a revived finished job), so a daemon running jobs
 * without datasets is not woken, nor queried, by each of their writes.
 *
 * A pass reads the jobs whose last transition is not yet applied (their `datasetStatusSeq` is behind
 * their `seq`), replays each one's transitions from its numbered events (the last one from the job
 * document, whose event may not be written yet), writes the dataset with one guarded update, then
 * marks the job. A crash between the two writes repeats the replay, which the dataset's record of
 * who set its status turns into a no-op; daemons racing on one dataset meet its compare-and-set.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { DatasetSettings } from '../config/datasets.js';
import {
  mayReplace,
  statusesFor,
  vocabularyOf,
  type StatusSetter,
  type Transition,
} from '../datasets/legacyStatus.js';
import { Periodic, pollInterval } from '../periodic.js';
import {
  datasetDependents,
  datasetsByUuid,
  datasetsCollection,
  eventsBetween,
  hasUnfinishedDatasetJobs,
  isMigratedJob,
  jobsWithStatusPending,
  markStatusApplied,
  watchDatasetTransitions,
  writeDatasetStatus,
  type StatusHistoryEntry,
  type StatusJob,
} from '../store/datasets.js';
import type { Store } from '../store/index.js';
import { StreamWatch } from './streamWatch.js';

export interface DatasetStatusOptions {
  settings: DatasetSettings;
  clock: Clock;
  changeStreams: boolean;
  logger?: Logger;
  onError?(err: unknown): void;
  onOk?(): void;
}

/** Jobs read per query of a pass. */
const BATCH = 200;
/** A missing event younger than this may still be being written: the job waits for it. */
const EVENT_GRACE_MS = 10_000;
/** Sleep while a job waits for such an event. */
const EVENT_RECHECK_MS = 50;
/** Compare-and-set attempts per job and pass before it is left to the next pass. */
const CAS_TRIES = 5;

/**
 * deferred: an event may still be being written, or the write lost its compare-and-set five times
 * (looked at again shortly); later: a migrated job whose dataset does not carry the migration's mark
 * of it yet (the next regular pass).
 */
export type ApplyOutcome = 'applied' | 'unchanged' | 'missing' | 'duplicate' | 'deferred' | 'later';

export class DatasetStatusService {
  readonly name = 'dataset-status';
  private readonly loop: Periodic;
  /** Relevant changes wake a pass; while it is ready the timer is a safety net. */
  private readonly watch: StreamWatch<true>;
  /** What the open (or reopening) stream watches: every transition, or only new dataset work. */
  private watchTransitions = true;
  /** Whether a pass has asked yet if any dataset job is unfinished. */
  private checked = false;
  private deferred = false;
  /** A migrated job waits for its dataset's mark, a write no stream of ours sees: poll for it. */
  private later = false;

  constructor(
    private readonly store: Store,
    private readonly o: DatasetStatusOptions,
  ) {
    this.loop = new Periodic(
      () =>
        this.deferred
          ? EVENT_RECHECK_MS
          : pollInterval(o.settings.statusPollMs, this.watch.ready && !this.later),
      () => this.runOnce(),
      (err) => o.onError?.(err),
    );
    this.watch = new StreamWatch({
      name: 'dataset status watch',
      open: (h) => watchDatasetTransitions(store, h, { transitions: this.watchTransitions }),
      wake: () => this.loop.wake(),
      ...(o.logger ? { logger: o.logger } : {}),
    });
  }

  start(): void {
    if (!this.o.settings.statusUpdates) return;
    this.loop.start();
    if (this.o.changeStreams) this.watch.start();
  }

  async stop(): Promise<void> {
    await this.watch.stop();
    await this.loop.stop();
  }

  /**
   * Watch every transition while some dataset job is unfinished, else only what starts dataset work.
   * Switching reopens the stream; the new stream's first pass reads what happened in between.
   */
  private async setWatchTransitions(transitions: boolean): Promise<void> {
    if (transitions === this.watchTransitions) return;
    this.watchTransitions = transitions;
    await this.watch.restart();
  }

  /** One pass over every job whose status is pending. Returns how many datasets were written. */
  async runOnce(): Promise<number> {
    let written = 0;
    let deferred = false;
    let later = false;
    let pending = false;
    let after: string | undefined;
    for (;;) {
      const jobs = await jobsWithStatusPending(this.store, {
        ...(after !== undefined ? { after } : {}),
        limit: BATCH,
      });
      for (const job of jobs) {
        const r = await this.applyJob(job);
        if (r === 'applied') written++;
        if (r === 'deferred') deferred = true;
        if (r === 'later') later = true;
      }
      if (jobs.length > 0) pending = true;
      if (jobs.length < BATCH) break;
      after = jobs[jobs.length - 1]!._id;
    }
    this.deferred = deferred;
    this.later = later;
    // Whether a dataset job is unfinished changes only through a pending job (a job inserted with a
    // datasetUuid, a transition, a revived finished job): ask after a pass that found one, and once.
    if (this.o.changeStreams && (pending || !this.checked)) {
      this.checked = true;
      await this.setWatchTransitions(await hasUnfinishedDatasetJobs(this.store));
    }
    this.o.onOk?.();
    return written;
  }

  /** The job's transitions not yet applied, or null when one in the middle may still be being written. */
  private async pendingTransitions(job: StatusJob): Promise<Transition[] | null> {
    const applied = job.datasetStatusSeq ?? 0;
    const last = job.seq ?? 0;
    if (last === 0) return [{ seq: 0, from: null, to: job.state, at: job.updatedAt }];
    // Only the last transition pending: the job document tells it, no need to read events.
    const events = new Map(
      last - applied > 1
        ? (await eventsBetween(this.store, job._id, applied, last)).map((e) => [e.seq!, e])
        : [],
    );
    const now = this.o.clock.now().getTime();
    const out: Transition[] = [];
    let prevTo = applied > 0 ? (job.datasetStatusState ?? null) : null;
    for (let k = applied + 1; k <= last; k++) {
      const e = events.get(k);
      if (e) {
        out.push({ seq: k, from: e.from, to: e.to, at: e.at });
        prevTo = e.to;
      } else if (k === last) {
        out.push({ seq: k, from: prevTo, to: job.state, at: job.updatedAt });
      } else {
        const next = events.get(k + 1)?.at ?? job.updatedAt;
        if (now - next.getTime() < EVENT_GRACE_MS) return null;
        // Never recorded (its writer died): what it was is unknown, so it moves nothing.
        prevTo = events.get(k + 1)?.from ?? null;
      }
    }
    return out;
  }

  async applyJob(job: StatusJob): Promise<ApplyOutcome> {
    const transitions = await this.pendingTransitions(job);
    if (transitions === null) return 'deferred';
    const uuid = job.datasetUuid!;
    const lastSeq = job.seq ?? 0;
    const lastState = transitions.length ? transitions[transitions.length - 1]!.to : job.state;
    const vocab = vocabularyOf(job);
    const coll = datasetsCollection(this.store, this.o.settings);
    const steps: { t: Transition; statuses: string[] }[] = [];
    if (vocab) {
      for (const t of transitions) {
        const next =
          t.to === 'completed'
            ? (await datasetDependents(this.store, job._id, uuid)).map((d) => vocabularyOf(d))
            : [];
        steps.push({ t, statuses: statusesFor(vocab, t, { next }) });
      }
    }
    let outcome: ApplyOutcome = 'unchanged';
    if (steps.some((s) => s.statuses.length > 0)) {
      outcome = await this.writeDataset(coll, job, steps);
      if (outcome === 'deferred' || outcome === 'later') return outcome;
    }
    await markStatusApplied(this.store, job._id, lastSeq, lastState);
    return outcome;
  }

  private async writeDataset(
    coll: ReturnType<typeof datasetsCollection>,
    job: StatusJob,
    steps: { t: Transition; statuses: string[] }[],
  ): Promise<ApplyOutcome> {
    const uuid = job.datasetUuid!;
    for (let attempt = 0; attempt < CAS_TRIES; attempt++) {
      const docs = await datasetsByUuid(coll, uuid);
      if (docs.length !== 1) {
        const what = docs.length === 0 ? 'missing' : 'duplicate';
        this.o.logger?.warn(
          { jobId: job._id, datasetUuid: uuid, collection: this.o.settings.collection },
          docs.length === 0
            ? 'dataset status not updated: no dataset document has this uuid'
            : 'dataset status not updated: several dataset documents have this uuid',
        );
        return what;
      }
      const d = docs[0]!;
      const migrated = isMigratedJob(job);
      // Until the migration marks the dataset with its jobs (or after a rollback removed them).
      if (migrated && !(Array.isArray(d.jobd_job_ids) && d.jobd_job_ids.includes(job._id))) return 'later';
      const rec = d.jobd_status;
      let current: StatusSetter | null = rec?.jobId
        ? { jobId: rec.jobId, jobCreatedAt: rec.jobCreatedAt, seq: rec.seq, at: rec.at }
        : null;
      let status = typeof d.status === 'string' ? d.status : null;
      const entries: StatusHistoryEntry[] = [];
      let first: StatusSetter | null = null;
      for (const { t, statuses } of steps) {
        const setter: StatusSetter = { jobId: job._id, jobCreatedAt: job.createdAt, seq: t.seq, at: t.at };
        if (!mayReplace(current, setter)) continue;
        for (const s of statuses) {
          if (s === status) continue;
          entries.push({ from: status, to: s, jobId: job._id, type: job.type, jobState: t.to, at: t.at });
          status = s;
          first ??= setter;
          current = setter;
        }
      }
      if (entries.length === 0) return 'unchanged';
      const landed = await writeDatasetStatus(coll, {
        datasetId: d._id,
        expect: { status: d.status, rev: typeof rec?.rev === 'number' ? rec.rev : null },
        setter: current!,
        first: { seq: first!.seq, at: first!.at },
        status: status!,
        entries,
        historyLimit: this.o.settings.historyLimit,
        migratedJob: migrated,
      });
      if (landed) {
        this.o.logger?.debug(
          { datasetUuid: uuid, jobId: job._id, statuses: entries.map((e) => e.to) },
          'dataset status updated',
        );
        return 'applied';
      }
    }
    return 'deferred';
  }
}
