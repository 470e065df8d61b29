/**
 * The API's shapes as zod schemas: requests are validated with them and the OpenAPI document is made
 * from them. The job schema mirrors JobDoc (src/types.ts); the checks at the bottom fail the build if
 * the two drift apart, so the document stays true.
 */
import { z } from 'zod';
import {
  JOB_STATES,
  WORKFLOW_STATES,
  type JobDoc,
  type ScheduleDoc,
  type WorkerDoc,
  type WorkflowDoc,
} from '../types.js';

const date = z.date();
const nullableDate = z.date().nullable();

export const jobState = z.enum(JOB_STATES);

const serializedError = z.object({
  name: z.string(),
  code: z.string().optional(),
  message: z.string(),
  stack: z.string().optional(),
  details: z.unknown().optional(),
});

const jobError = serializedError.extend({
  at: date,
  attempt: z.number(),
  worker: z.string().optional(),
});

export const jobSchema = z
  .object({
    _id: z.string(),
    type: z.string(),
    params: z.unknown(),
    state: jobState,
    priority: z.number().describe('1 is the highest priority'),
    runAt: date,
    attempts: z.number(),
    maxAttempts: z.number().nullable(),
    timeoutMs: z.number().nullable(),
    // The lease's token is left out: it is the holder's proof in a worker's writes, and no reader
    // needs it (a worker's claim answers with its token beside the job).
    lease: z
      .object({ owner: z.string(), expiresAt: date })
      .nullable()
      .optional()
      .describe('who holds the running job, and until when (its token is never shown)'),
    progress: z
      .object({ percent: z.number(), message: z.string().optional(), updatedAt: date })
      .nullable()
      .optional(),
    result: z.unknown().optional(),
    lastError: jobError.nullable().optional(),
    errors: z.array(jobError),
    resources: z
      .object({
        peakRssBytes: z.number().optional(),
        cpuMs: z.number().optional(),
        wallMs: z.number().optional(),
      })
      .nullable()
      .optional(),
    logTail: z.string().nullable().optional(),
    createdAt: date,
    updatedAt: date,
    startedAt: nullableDate.optional(),
    finishedAt: nullableDate.optional(),
    datasetUuid: z.string().nullable().optional(),
    dedupeKey: z.string().nullable().optional(),
    tags: z.array(z.string()),
    seq: z.number().optional(),
    scheduleId: z.string().optional(),
    fireKey: z.string().optional(),
    hookErrors: z
      .array(serializedError.extend({ hook: z.string(), attempt: z.number(), at: date }))
      .optional(),
    dependsOn: z.array(z.string()).optional(),
    onDependencyFailure: z.enum(['fail', 'skip', 'ignore']).optional(),
    depsLeft: z.number().optional(),
    waitingFor: z.enum(['dependencies', 'children', 'submit']).nullable().optional(),
    releasePending: z.boolean().optional(),
    hasDependents: z.boolean().optional().describe('some job names this one in its dependsOn'),
    dependenciesMarked: z.boolean().optional(),
    blockedBy: z.string().nullable().optional(),
    workflowId: z.string().nullable().optional(),
    workflowKey: z.string().nullable().optional(),
    parentId: z.string().nullable().optional(),
    spawnKey: z.string().optional(),
    childPolicy: z.enum(['fail', 'ignore', 'continue']).optional(),
    resumes: z.number().optional(),
    upstream: z.array(z.string()).optional(),
  })
  .meta({ id: 'Job' });

/** A job as trees and workflows list it: without params and result (and what it lacks is absent). */
export const jobSummarySchema = jobSchema
  .omit({ params: true, result: true })
  .partial()
  .required({ _id: true, type: true, state: true })
  .meta({ id: 'JobSummary' });

export const jobTreeSchema = z.object({ job: jobSchema, subjobs: z.array(jobSummarySchema) });

const priority = z.number().int().min(1).max(100);
const tags = z.array(z.string().min(1).max(200)).max(100);

/** What POST /api/jobs/ takes: the library's enqueue options, named as in JobdClient.enqueue. */
export const newJobSchema = z
  .strictObject({
    type: z.string().min(1).describe('a job type; its params are checked against its input schema'),
    params: z.unknown().optional(),
    priority: priority.optional(),
    runAt: z.coerce.date().optional(),
    delayMs: z.number().int().min(0).optional(),
    maxAttempts: z.number().int().min(1).max(1000).optional(),
    timeoutMs: z.number().int().min(1).optional(),
    dedupeKey: z.string().min(1).optional(),
    datasetUuid: z.string().min(1).optional(),
    tags: tags.optional(),
    dependsOn: z.array(z.string().min(1)).optional(),
    onDependencyFailure: z.enum(['fail', 'skip', 'ignore']).optional(),
  })
  .meta({ id: 'NewJob' });

export const newJobWithSubjobsSchema = newJobSchema
  .extend({
    subjobs: z
      .array(newJobSchema.omit({ dependsOn: true }))
      .min(1)
      .max(1000)
      .describe('enqueued after the parent, each depending on it'),
  })
  .meta({ id: 'NewJobWithSubjobs' });

export const enqueueResultSchema = z.object({ job: jobSchema, created: z.boolean() });

export const jobEditSchema = z
  .strictObject({ priority: priority.optional(), runAt: z.coerce.date().optional(), tags: tags.optional() })
  .refine((e) => e.priority !== undefined || e.runAt !== undefined || e.tags !== undefined, {
    message: 'give at least one of priority, runAt, tags',
  });

export const jobIdParams = z.object({ id: z.string().min(1).max(200) });

export const listQuerySchema = z.strictObject({
  status: z.union([jobState, z.array(jobState)]).optional(),
  job_type: z.string().min(1).optional(),
  priority: z.coerce.number().int().min(1).max(100).optional(),
  queue: z.string().min(1).optional(),
  dataset: z.string().min(1).optional(),
  tag: z.string().min(1).optional(),
  page: z.coerce.number().int().min(1).max(1_000_000).optional(),
  page_size: z.coerce.number().int().min(1).max(1000).default(50),
  cursor: z.string().min(1).optional().describe('next_cursor of the previous page'),
});

export const jobPageSchema = z.object({
  items: z.array(jobSchema),
  page: z.number().nullable(),
  page_size: z.number(),
  total: z.number().nullable().describe('with page paging only'),
  next_cursor: z.string().nullable(),
});

export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number(),
    detail: z.string(),
    instance: z.string().optional(),
    errors: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'Problem' });

export const workflowSchema = z.object({
  _id: z.string(),
  name: z.string(),
  state: z.enum(WORKFLOW_STATES),
  jobCount: z.number(),
  keys: z.record(z.string(), z.string()),
  createdAt: date,
  updatedAt: date,
  finishedAt: nullableDate.optional(),
  reason: z.string().nullable().optional(),
});

/** A workflow as lists show it: without `keys` (one entry per job), which its own read has. */
export const workflowSummarySchema = workflowSchema.omit({ keys: true });

export const scheduleSchema = z.object({
  _id: z.string(),
  cron: z.string().optional(),
  everyMs: z.number().optional(),
  timezone: z.string().optional(),
  type: z.string(),
  params: z.unknown(),
  priority: z.number().optional(),
  catchUp: z.enum(['skip', 'once', 'all']),
  catchUpMax: z.number(),
  paused: z.boolean(),
  nextFireAt: date,
  lastFireAt: nullableDate,
  source: z.enum(['settings', 'runtime']),
  createdAt: date,
  updatedAt: date,
});

export const workerSchema = z.object({
  _id: z.string(),
  host: z.string(),
  pid: z.number(),
  version: z.string(),
  startedAt: date,
  heartbeatAt: date,
  concurrency: z.number(),
  types: z.array(z.string()).optional(),
  resources: z
    .object({
      cpus: z.number(),
      memoryMb: z.number(),
      gpus: z.array(z.number()),
      used: z.object({ cpus: z.number(), memoryMb: z.number(), gpus: z.array(z.number()) }),
    })
    .optional()
    .describe('capacity (settings resources) and what its jobs hold, as of the last heartbeat'),
  unfitTypes: z
    .array(z.object({ type: z.string(), why: z.string() }))
    .optional()
    .describe('job types it knows but never claims: their needs exceed its capacity'),
  running: z.array(z.string()),
  state: z.enum(['running', 'draining', 'stopped']),
  external: z.boolean().optional().describe('a program pulling jobs over HTTP or receive(), not a daemon'),
  dead: z.boolean(),
});

const counts = z.record(jobState, z.number());

export const queueSchema = z.object({
  name: z.string(),
  paused: z.boolean(),
  pausedAt: nullableDate,
  types: z.array(z.string()),
  counts,
  oldestQueuedAt: nullableDate,
  oldestQueuedAgeMs: z.number().nullable(),
  concurrency: z.number().nullable(),
});

// Drift checks: every field of the document types is in its schema, and the reverse.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Keys<T> = keyof T & string;
const jobKeysMatch: Same<Keys<JobDoc>, Keys<z.infer<typeof jobSchema>>> = true;
const workflowKeysMatch: Same<Keys<WorkflowDoc>, Keys<z.infer<typeof workflowSchema>>> = true;
const scheduleKeysMatch: Same<Keys<ScheduleDoc>, Keys<z.infer<typeof scheduleSchema>>> = true;
const workerKeysMatch: Same<Keys<WorkerDoc> | 'dead', Keys<z.infer<typeof workerSchema>>> = true;
// And a stored job is a valid response (types line up field by field).
const jobAssignable = (j: JobDoc): z.input<typeof jobSchema> => j;
export const SCHEMA_CHECKS = [
  jobKeysMatch,
  workflowKeysMatch,
  scheduleKeysMatch,
  workerKeysMatch,
  jobAssignable,
];
