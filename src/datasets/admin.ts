/**
 * Dataset administration, shared by the library and jobctl (`jobctl dataset show|process`): a
 * dataset's status with its history and jobs, and starting one of its pipelines.
 */
import { resolveDatasets } from '../config/datasets.js';
import type { ResolvedConfig } from '../config/types.js';
import { DatasetBusyError, JobdError, NotFoundError, ValidationError } from '../errors.js';
import { checkInputs } from '../jobs/checkInputs.js';
import {
  datasetsByUuid,
  datasetsCollection,
  jobsOfDataset,
  unfinishedJobsOfDataset,
  workflowIdsWithPrefix,
  type StatusHistoryEntry,
} from '../store/datasets.js';
import type { Store, SubmitResult } from '../store/index.js';
import type { JobId, JobState } from '../types.js';
import { submitWorkflow } from '../workflows/submit.js';
import { datasetFacts, pipelinesOf, pipelineWorkflow } from './pipelines.js';

type DatasetConfig = Pick<ResolvedConfig, 'dataDirs' | 'jobTypes' | 'defaults'> & {
  datasets?: ResolvedConfig['datasets'];
};

export interface DatasetJobRow {
  id: JobId;
  type: string;
  state: JobState;
  attempts: number;
  maxAttempts: number | null;
  workflowId: string | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  lastError: string | null;
}

export interface DatasetReport {
  uuid: string;
  collection: string;
  status: unknown;
  /** The job transition that set the status (null: set by something other than jobd). */
  setBy: { jobId: JobId; seq: number; at: Date } | null;
  /** Oldest first, bounded by datasets.historyLimit. */
  history: StatusHistoryEntry[];
  /** The dataset's jobs, oldest first (at most `jobsLimit`). */
  jobs: DatasetJobRow[];
}

/** A dataset's status, history and jobs; NotFoundError when no document has the uuid. */
export async function showDataset(
  store: Store,
  config: DatasetConfig,
  uuid: string,
  opts: { jobsLimit?: number } = {},
): Promise<DatasetReport> {
  const settings = config.datasets ?? resolveDatasets(undefined);
  const docs = await datasetsByUuid(datasetsCollection(store, settings), uuid);
  const jobs = await jobsOfDataset(store, uuid, opts.jobsLimit ?? 100);
  if (docs.length === 0) {
    const also = jobs.length ? ` (${jobs.length} job(s) carry that datasetUuid)` : '';
    throw new NotFoundError(`dataset ${uuid} not found in collection ${settings.collection}${also}`);
  }
  if (docs.length > 1)
    throw new JobdError(
      `dataset uuid ${uuid} is held by several documents of ${settings.collection}; jobd updates neither`,
      'JOBD_DATASET_DUPLICATE',
    );
  const d = docs[0]!;
  const rec = d.jobd_status;
  return {
    uuid,
    collection: settings.collection,
    status: d.status ?? null,
    setBy: rec?.jobId ? { jobId: rec.jobId, seq: rec.seq, at: rec.at } : null,
    history: Array.isArray(rec?.history) ? rec.history : [],
    jobs: jobs.map((j) => ({
      id: j._id,
      type: j.type,
      state: j.state,
      attempts: j.attempts,
      maxAttempts: j.maxAttempts,
      workflowId: j.workflowId ?? null,
      createdAt: j.createdAt,
      startedAt: j.startedAt ?? null,
      finishedAt: j.finishedAt ?? null,
      lastError: j.lastError?.message ?? null,
    })),
  };
}

export interface ProcessResult extends SubmitResult {
  pipeline: string;
  uuid: string;
}

/**
 * Start `pipeline` for the dataset: its workflow is built from the dataset document and submitted.
 * Refused (DatasetBusyError) while the dataset has unfinished jobs. The workflow's id is
 * `dataset-<uuid>-<n>`, one more than the dataset's last, so two processes racing to start one
 * meet on the same id and the second is refused.
 */
export async function processDataset(
  store: Store,
  config: DatasetConfig,
  uuid: string,
  pipeline: string,
  now: Date,
): Promise<ProcessResult> {
  const settings = config.datasets ?? resolveDatasets(undefined);
  const all = pipelinesOf(settings);
  const def = all[pipeline];
  if (!def)
    throw new ValidationError(
      `pipeline ${JSON.stringify(pipeline)} is not defined: must be one of ${Object.keys(all).sort().join(', ')}`,
    );
  const docs = await datasetsByUuid(datasetsCollection(store, settings), uuid);
  if (docs.length === 0)
    throw new NotFoundError(`dataset ${uuid} not found in collection ${settings.collection}`);
  if (docs.length > 1)
    throw new JobdError(
      `dataset uuid ${uuid} is held by several documents of ${settings.collection}; resolve that first`,
      'JOBD_DATASET_DUPLICATE',
    );
  const busy = await unfinishedJobsOfDataset(store, uuid);
  if (busy.length) throw busyError(uuid, busy);
  const facts = datasetFacts(docs[0]!, uuid, settings, config.dataDirs);
  const prefix = `dataset-${uuid}-`;
  const last = Math.max(
    0,
    ...(await workflowIdsWithPrefix(store, prefix))
      .map((id) => id.slice(prefix.length))
      .filter((n) => /^\d+$/.test(n))
      .map(Number),
  );
  const spec = pipelineWorkflow(pipeline, def, facts, `${prefix}${last + 1}`);
  await checkInputs(
    spec.jobs.map((j) => ({
      type: j.type,
      params: j.params,
      where: `pipeline ${pipeline} stage ${j.key}: `,
    })),
    config.jobTypes,
    config.dataDirs,
  );
  const r = await submitWorkflow(
    store,
    spec,
    (t) => config.jobTypes[t] ?? { priority: config.defaults.priority },
    now,
  );
  if (!r.created)
    throw new DatasetBusyError(
      `dataset ${uuid} is already being processed: workflow ${r.workflow._id} was started at the same time`,
    );
  return { ...r, pipeline, uuid };
}

function busyError(
  uuid: string,
  jobs: { _id: JobId; type: string; state: JobState; workflowId?: string | null }[],
) {
  const wf = [...new Set(jobs.map((j) => j.workflowId).filter((w): w is string => !!w))];
  const list = jobs
    .slice(0, 5)
    .map((j) => `${j._id} (${j.type}, ${j.state})`)
    .join(', ');
  return new DatasetBusyError(
    `dataset ${uuid} is already being processed: unfinished job(s) ${list}` +
      (wf.length ? ` of workflow ${wf.join(', ')}` : '') +
      '; wait for them to finish or cancel them (jobctl workflow cancel / jobctl cancel)',
  );
}
