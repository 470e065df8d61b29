import type { Collection, Db, MongoClient } from 'mongodb';
import type { JobDoc, JobEventDoc, JobId, JobState, ScheduleDoc, WorkerDoc, WorkflowDoc } from '../types.js';

/**
 * A job as stored. Besides JobDoc it carries:
 * - dedupeActive: a copy of dedupeKey kept only while the job is unfinished. A unique index with
 *   partialFilterExpression {dedupeActive: {$exists: true}} makes dedupeKey unique among unfinished
 *   jobs without $in/$ne in the partial filter (which MongoDB does not allow there).
 * - settledToken: the lease token of the claim whose owner settled the job, so a bulk write that
 *   matched fewer documents than sent can tell which ones landed.
 */
export type StoredJob = JobDoc & {
  dedupeActive?: string;
  settledToken?: string | null;
  /** Dataset status marks (src/store/datasets.ts): the last transition applied to the job's dataset. */
  datasetStatusSeq?: number;
  datasetStatusState?: JobState | null;
  datasetStatusFinal?: boolean;
};

/** One piece of a job's output (src/store/jobLogs.ts). */
export interface LogChunkDoc {
  _id: string;
  jobId: JobId;
  attempt: number;
  /**
   * The run it belongs to: the job's seq when it was claimed, which grows with every claim (an attempt
   * given back at shutdown runs again under the same attempt number, never the same run).
   */
  run: number;
  /** Byte offset of this chunk in the run's output (orders the chunks of a run). */
  off: number;
  at: Date;
  /** The output, credentials redacted. */
  text: string;
  /** Bytes of output it stands for (before redaction): what counts against the bound. */
  bytes: number;
  /** The marker that ends a log cut at the bound. */
  truncated?: boolean;
}

export interface Store {
  client: MongoClient;
  db: Db;
  jobs: Collection<StoredJob>;
  events: Collection<JobEventDoc>;
  workers: Collection<WorkerDoc>;
  schedules: Collection<ScheduleDoc>;
  workflows: Collection<WorkflowDoc>;
  logs: Collection<LogChunkDoc>;
  close(): Promise<void>;
}
