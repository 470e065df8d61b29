/** jobd's public library API (re-exports only). */
export * from './types.js';
export * from './errors.js';
export { systemClock, ManualClock, type Clock } from './clock.js';
export type { ResolvedConfig } from './config/types.js';
export { loadSettings, type LoadSettingsOptions, type JobdSettings } from './config/settings.js';
export { JobdClient, WaitTimeoutError, CLIENT_DEFAULTS, type ClientOptions } from './client.js';
export {
  receive,
  ReceivedJob,
  ResultRefusedError,
  type ReceiveOptions,
  type FailOptions,
} from './pull/receive.js';
export { startDaemon, type Daemon, type DaemonStats, type StartDaemonOptions } from './worker/daemon.js';
export { applyHeapGrowth } from './worker/heapGrowth.js';
export type { DaemonEvents, DaemonEventName } from './worker/events.js';
export { backoffMs, decideRetry, type RetryDecision } from './retryPolicy.js';
export { builtinJobTypes, BUILTIN_JOB_TYPES } from './jobs/registry.js';
export type { ScheduleInput } from './schedules/spec.js';
export type { EnqueueResult, ListOptions, SubmitResult } from './store/index.js';
export { WorkflowAbandonedError } from './store/index.js';
export type { WorkflowSpec, WorkflowJobSpec } from './workflows/submit.js';
export { validateDag, findCycle, layers } from './workflows/dag.js';
export {
  defineJobType,
  legacyNames,
  isDefinedJobType,
  type DefinedJobType,
  type JobTypeSpec,
  type LazyJobTypeSpec,
  type JobTypeDefaults,
  type TypedJobContext,
} from './jobs/defineJobType.js';
export type { Zod } from './jobs/lazyZod.js';
export { dataPath, type DataPathOptions, type DataDirs, type DeclaredPath } from './jobs/dataPath.js';
export { loadCatalog, jsonSchemas, type CatalogEntry } from './jobs/catalog.js';
export { checkInputs, type InputToCheck } from './jobs/checkInputs.js';
export {
  queueSummaries,
  pauseQueue,
  resumeQueue,
  cleanQueueJobs,
  queueMembership,
  type QueueSummary,
  type CleanQueueOptions,
  type CleanQueueResult,
} from './queueAdmin.js';
export {
  showDataset,
  processDataset,
  type DatasetReport,
  type DatasetJobRow,
  type ProcessResult,
} from './datasets/admin.js';
export {
  BUILTIN_PIPELINES,
  pipelinesOf,
  pipelineWorkflow,
  datasetFacts,
  type DatasetFacts,
} from './datasets/pipelines.js';
export {
  LEGACY_VOCABULARY,
  statusesFor,
  mayReplace,
  type StatusVocabulary,
  type StatusSetter,
} from './datasets/legacyStatus.js';
export type { DatasetSettings, PipelineSettings, PipelineStageSettings } from './config/datasets.js';
export type { StatusHistoryEntry } from './store/datasets.js';
export { readJobLog, followJobLog, type JobLog as StoredJobLog, type LogPiece } from './ops/jobLogs.js';
