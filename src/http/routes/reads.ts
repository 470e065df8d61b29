/** Read endpoints for workflows, schedules, queues, datasets and the legacy migration's validation. */
import { z } from 'zod';
import { showDataset } from '../../datasets/admin.js';
import { validateMigration } from '../../migrate/migrate.js';
import { queueSummaries } from '../../queueAdmin.js';
import { WORKFLOW_STATES } from '../../types.js';
import { HttpProblem } from '../problem.js';
import {
  jobSummarySchema,
  queueSchema,
  scheduleSchema,
  workflowSchema,
  workflowSummarySchema,
} from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const name = z.object({ name: z.string().min(1).max(200) });

export function registerReadRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const s = <T extends object>(tag: string, summary: string, extra: T) => ({
    tags: [tag],
    summary,
    security: read.security,
    ...extra,
  });

  app.get(
    '/api/workflows',
    {
      ...read,
      schema: s('workflows', 'Workflows, newest first', {
        querystring: z.strictObject({
          state: z.enum(WORKFLOW_STATES).optional(),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: { 200: z.array(workflowSummarySchema), ...PROBLEMS },
      }),
    },
    (req) =>
      ctx.client.listWorkflows({
        limit: req.query.limit,
        ...(req.query.state !== undefined ? { state: req.query.state } : {}),
      }),
  );
  app.get(
    '/api/workflows/:id',
    {
      ...read,
      schema: s('workflows', 'A workflow and its jobs (without params and results)', {
        params: z.object({ id: z.string().min(1).max(200) }),
        response: {
          200: z.object({ workflow: workflowSchema, jobs: z.array(jobSummarySchema) }),
          ...PROBLEMS,
        },
      }),
    },
    async (req) => {
      const [workflow, jobs] = await Promise.all([
        ctx.client.getWorkflow(req.params.id),
        ctx.client.workflowJobs(req.params.id),
      ]);
      if (!workflow) throw new HttpProblem(404, 'Not Found', `workflow ${req.params.id} not found`);
      return { workflow, jobs };
    },
  );

  app.get(
    '/api/schedules',
    {
      ...read,
      schema: s('schedules', 'Every schedule, with its next fire time', {
        response: { 200: z.array(scheduleSchema), ...PROBLEMS },
      }),
    },
    () => ctx.client.listSchedules(),
  );
  app.get(
    '/api/schedules/:name',
    {
      ...read,
      schema: s('schedules', 'One schedule', {
        params: name,
        response: { 200: scheduleSchema, ...PROBLEMS },
      }),
    },
    (req) => ctx.client.getSchedule(req.params.name),
  );

  const queues = () =>
    queueSummaries(ctx.store, ctx.config.jobTypes, ctx.config.queues ?? {}, ctx.clock.now());
  app.get(
    '/api/queues',
    {
      ...read,
      schema: s('queues', 'Every queue: paused or not, its types and jobs per state', {
        response: { 200: z.array(queueSchema), ...PROBLEMS },
      }),
    },
    () => queues(),
  );
  app.get(
    '/api/queues/:name',
    {
      ...read,
      schema: s('queues', 'One queue', { params: name, response: { 200: queueSchema, ...PROBLEMS } }),
    },
    async (req) => {
      const q = (await queues()).find((x) => x.name === req.params.name);
      if (!q) throw new HttpProblem(404, 'Not Found', `queue ${req.params.name} not found`);
      return q;
    },
  );

  app.get(
    '/api/datasets/:uuid',
    {
      ...read,
      schema: s('datasets', "A legacy dataset's status, its status history and its jobs", {
        params: z.object({ uuid: z.string().min(1).max(200) }),
        response: {
          200: z.object({
            uuid: z.string(),
            collection: z.string(),
            status: z.unknown(),
            setBy: z.object({ jobId: z.string(), seq: z.number(), at: z.date() }).nullable(),
            history: z.array(z.unknown()).describe('the status changes jobd made, oldest first'),
            jobs: z.array(
              z.object({
                id: z.string(),
                type: z.string(),
                state: z.string(),
                attempts: z.number(),
                maxAttempts: z.number().nullable(),
                workflowId: z.string().nullable(),
                createdAt: z.date(),
                startedAt: z.date().nullable(),
                finishedAt: z.date().nullable(),
                lastError: z.string().nullable(),
              }),
            ),
          }),
          ...PROBLEMS,
        },
      }),
    },
    (req) => showDataset(ctx.store, ctx.config, req.params.uuid),
  );

  app.get(
    '/api/migration/validation',
    {
      ...read,
      schema: s('migration', 'Check the legacy migration: every dataset has its jobs and agrees with them', {
        // The same defaults as `jobctl migrate validate`.
        querystring: z.strictObject({
          collection: z.string().min(1).default('visstoredatas'),
          legacy_database: z.string().min(1).optional(),
          dataset_uuid: z.string().min(1).optional(),
          in_data_dir: z.string().min(1).default('/mnt/visus_datasets/upload'),
          out_data_dir: z.string().min(1).default('/mnt/visus_datasets/converted'),
        }),
        response: {
          200: z.object({
            ok: z.boolean(),
            missingJobs: z.array(z.object({ uuid: z.string(), status: z.string() })),
            jobsWithoutDataset: z.array(z.object({ jobId: z.string(), uuid: z.string().nullable() })),
            statusDisagrees: z.array(
              z.object({
                uuid: z.string(),
                status: z.string().nullable(),
                jobs: z.array(z.object({ id: z.string(), type: z.string(), state: z.string() })),
              }),
            ),
            ledgerWithoutJobs: z.array(z.object({ uuid: z.string(), missing: z.array(z.string()) })),
          }),
          ...PROBLEMS,
        },
      }),
    },
    (req) => {
      const q = req.query;
      return validateMigration(ctx.store, {
        collection: q.collection,
        ...(q.legacy_database !== undefined ? { legacyDatabase: q.legacy_database } : {}),
        ...(q.dataset_uuid !== undefined ? { uuid: q.dataset_uuid } : {}),
        batchSize: 1000,
        inDataDir: q.in_data_dir.replace(/\/+$/, ''),
        outDataDir: q.out_data_dir.replace(/\/+$/, ''),
      });
    },
  );
}
