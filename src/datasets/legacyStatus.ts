/**
 * How a job's state changes move its dataset's `status`, in the legacy service's vocabulary (pure).
 * docs/datasets.md holds the table; the transitions it produces are legal edges of the legacy table.
 */
import type { JobState } from '../types.js';

/** A legacy job type's statuses: queued (if it had one), running, and error. */
export interface StatusVocabulary {
  queued: string | null;
  running: string;
  error: string;
}

export const LEGACY_VOCABULARY: Readonly<Record<string, StatusVocabulary>> = {
  google_sync: { queued: 'sync queued', running: 'syncing', error: 'sync error' },
  dataset_conversion: { queued: 'conversion queued', running: 'converting', error: 'conversion error' },
  file_upload: { queued: 'upload queued', running: 'uploading', error: 'upload error' },
  file_extraction: { queued: null, running: 'unzipping', error: 'unzip error' },
  data_compression: { queued: null, running: 'zipping', error: 'compression error' },
};

export const DONE_STATUS = 'done';

/** A job tag naming the legacy type whose vocabulary the job's transitions use (set by pipelines). */
export const STATUS_TAG_PREFIX = 'dataset-status:';

/** The vocabulary a job moves its dataset with: its tag's, else its type's; null leaves the status alone. */
export function vocabularyOf(job: { type: string; tags?: readonly string[] }): StatusVocabulary | null {
  const tag = job.tags?.find((t) => t.startsWith(STATUS_TAG_PREFIX));
  const name = tag ? tag.slice(STATUS_TAG_PREFIX.length) : job.type;
  return LEGACY_VOCABULARY[name] ?? null;
}

/** One transition of a job, as its numbered event (or the job document) tells it. */
export interface Transition {
  seq: number;
  from: JobState | null;
  to: JobState;
  at: Date;
}

/** What the job's completion leads to: the next stage's vocabulary, or none (the last stage). */
export interface CompletionContext {
  /** Vocabularies of the dataset jobs that wait for this one; [] when it is the last stage. */
  next: (StatusVocabulary | null)[];
}

/**
 * The statuses one transition passes the dataset through, in order ([] leaves it as it is).
 * - enqueued or released into `queued`, or retried by an operator: the queued status;
 * - claimed: the running status;
 * - a failed attempt that will run again (`retrying`): the error status, then the queued status —
 *   both legal legacy edges (`syncing → sync error → sync queued`);
 * - failed for good, or cancelled while active: the error status;
 * - completed: the next stage's queued status, or `done` after the last stage;
 * - waiting (not started, or a parent waiting for its children), a requeue at shutdown (the job runs
 *   again at once), and a failure or cancel caused by a dependency (that one already moved the
 *   status): nothing.
 */
export function statusesFor(
  v: StatusVocabulary | null,
  t: Pick<Transition, 'from' | 'to'>,
  completion: CompletionContext,
): string[] {
  if (v === null) return [];
  const q = v.queued === null ? [] : [v.queued];
  switch (t.to) {
    case 'queued':
      return t.from === 'running' ? [] : q;
    case 'running':
      return [v.running];
    case 'retrying':
      return [v.error, ...q];
    case 'failed':
    case 'cancelled':
      return t.from === 'waiting' ? [] : [v.error];
    case 'completed': {
      if (completion.next.length === 0) return [DONE_STATUS];
      const after = completion.next.find((n) => n !== null);
      return after?.queued ? [after.queued] : [];
    }
    case 'waiting':
      return [];
  }
}

/** Who set a dataset's status: the job, its creation time, and the transition. */
export interface StatusSetter {
  jobId: string;
  jobCreatedAt: Date;
  seq: number;
  at: Date;
}

/**
 * May a transition of `mine` replace a status `current` set? Never when a newer job set it (created
 * later); for the same job, only a later transition; for another job created at the same moment (the
 * stages of one pipeline), a transition at or after the one that set it.
 */
export function mayReplace(current: StatusSetter | null | undefined, mine: StatusSetter): boolean {
  if (!current) return true;
  const c = current.jobCreatedAt.getTime();
  const m = mine.jobCreatedAt.getTime();
  if (c !== m) return c < m;
  if (current.jobId === mine.jobId) return current.seq < mine.seq;
  return current.at.getTime() <= mine.at.getTime();
}
