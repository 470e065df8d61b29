/** jobd's store: the only code that talks to MongoDB. One function per operation, each guarded. */
export type { Store, StoredJob } from './types.js';
export {
  openStore,
  ping,
  embeddedUri,
  resolveMongoUri,
  redactMongoUri,
  type OpenStoreOptions,
} from './connect.js';
export { ensureIndexes } from './indexes.js';
export { isTransientDbError, fatalConnectProblem } from './dbErrors.js';
export {
  whyUnstorable,
  whyResultUnstorable,
  bsonSize,
  formatBytes,
  MAX_DOCUMENT_BYTES,
  MAX_PARAMS_BYTES,
} from './encoding.js';
export {
  EDGES,
  allowedFrom,
  isAllowed,
  illegalTransition,
  type EdgeName,
  type Edge,
} from './stateMachine.js';
export { resolveNewJob, type NewJob, type JobDefaults } from './newJob.js';
export { enqueue, enqueueMany, newJobId, newJobDoc, type EnqueueResult } from './enqueue.js';
export {
  claimNext,
  claimBatch,
  recoverClaim,
  AmbiguousClaimError,
  CLAIM_SORT,
  type ClaimOptions,
  type ClaimBatchOptions,
  type PendingClaim,
} from './claim.js';
export {
  settleManyIfRunning,
  noOneToTell,
  needsNoRelease,
  completeIfRunning,
  completeManyIfRunning,
  failIfRunning,
  requeueIfRunning,
  heartbeatLeases,
  progressIfRunning,
  settlementTarget,
  type Settlement,
  type SettleBase,
  type SettleContext,
  type SettleResult,
  type HeldLease,
  type HeartbeatResult,
} from './running.js';
export { releaseAfter, rearmDependents, decide, type ReleaseResult } from './release.js';
export { markOlderDependents } from './dependents.js';
export { familiesOf, insertChildren, ownDependencies, type Family } from './family.js';
export { finishWorkflowIfDone, UNFINISHED_STATES } from './workflows.js';
export {
  getWorkflow,
  listWorkflows,
  workflowJobs,
  jobTree,
  type WorkflowSummary,
} from './workflowQueries.js';
export {
  submitWorkflowJobs,
  startWorkflow,
  sweepSubmitting,
  cancelWorkflow,
  WorkflowAbandonedError,
  type WorkflowJobInput,
  type SubmitResult,
} from './workflowOps.js';
export { rescueExpired, type RescueOptions, type RescueResult } from './rescue.js';
export { cancel, retry, releaseWaiting, deleteFinishedBefore } from './operator.js';
export {
  editIfNotRunning,
  runNow,
  deleteIfFinished,
  EDITABLE_STATES,
  RUNNABLE_STATES,
  type JobEdit,
} from './jobEdits.js';
export {
  get,
  getMany,
  list,
  countListed,
  countByPriority,
  dependentsOf,
  countByState,
  jobStats,
  type ListOptions,
  type JobStatsRow,
} from './queries.js';
export { eventsOf, appendEvents } from './events.js';
export {
  registerWorker,
  heartbeatWorker,
  markWorkerStopped,
  listWorkers,
  unservedTypes,
  type UnservedType,
  type WorkerInfo,
  type WorkerView,
} from './workers.js';
export {
  watchClaimable,
  watchJob,
  watchJobs,
  isChangeStreamUnsupported,
  type Watcher,
  type WatchHandlers,
} from './watch.js';
export {
  addSchedule,
  syncSettingsSchedules,
  getSchedule,
  listSchedules,
  pauseSchedule,
  resumeSchedule,
  removeSchedule,
  dueSchedules,
  earliestFireAt,
  upSpans,
  fireSchedule,
  fireKeyOf,
  triggerSchedule,
  watchSchedules,
  type Fire,
  type FiredJob,
} from './schedules.js';
export {
  setQueuePaused,
  listQueueDocs,
  pausedQueues,
  watchQueues,
  countByTypeAndState,
  countCleanable,
  cleanQueue,
  QUEUES_COLLECTION,
  type QueueDoc,
  type TypeStateCount,
  type CleanOptions,
} from './queues.js';
export {
  depthByTypeState,
  runningJobs,
  oldestDue,
  finishedSince,
  staleJobs,
  failureGroups,
  perfByType,
  statesOf,
  runningPerOwner,
  aheadOf,
  queuePaused,
  serverInfo,
  jobIndexProblems,
  changeStreamsSupported,
  type DepthRow,
  type RunningJob,
  type StaleJob,
  type FailureGroup,
  type PerfRow,
} from './monitor.js';
export { finishedTimeline, type TimelineBucket } from './timeline.js';
export { childrenWithResults, type ChildResult } from './children.js';
export { CLEANUP_BATCH, deleteFinishedJobs, type CleanupSelection, type CleanupTotals } from './cleanup.js';
export {
  appendLogChunk,
  storedLogBytes,
  logChunksAfter,
  deleteLogsOf,
  type LogChunkDoc,
  type LogCursor,
} from './jobLogs.js';
export {
  openTransitionStream,
  encodeResumeToken,
  decodeResumeToken,
  type Transition,
  type TransitionStream,
} from './transitions.js';
export * as migrationStore from './migration.js';
export { newJobDoc as jobDocFor } from './enqueue.js';
export {
  touchExternalWorker,
  noteExternalRunning,
  renewLease,
  leaseStanding,
  EXTERNAL_WORKER_PREFIX,
  type ExternalWorkerInfo,
  type LeaseStanding,
} from './external.js';
