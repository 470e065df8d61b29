import type { Collection, Db, MongoClient } from 'mongodb';
import type { JobDoc, JobEventDoc, JobState, ScheduleDoc, WorkerDoc, WorkflowDoc } from '../types.js';

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

export interface Store {
  client: MongoClient;
  db: Db;
  jobs: Collection<StoredJob>;
  events: Collection<JobEventDoc>;
  workers: Collection<WorkerDoc>;
  schedules: Collection<ScheduleDoc>;
  workflows: Collection<WorkflowDoc>;
  close(): Promise<void>;
}
