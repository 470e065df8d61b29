/**
 * The legacy dataset service's API paths and field names (dataset_uuid, job_type, parameters,
 * priority 1 high / 2 normal / 3 low), so its clients keep working against jobd.
 */
import { z } from 'zod';
import { countByState, depthByTypeState } from '../../store/index.js';
import type { JobDoc } from '../../types.js';
import { HttpProblem } from '../problem.js';
import { jobState } from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const tags = ['legacy v1'];

/** The legacy 1, 2 and 3 are jobd's 3, 5 and 7 (docs/jobs.md). */
const TO_JOBD: Record<number, number> = { 1: 3, 2: 5, 3: 7 };
const TO_LEGACY: Record<number, number> = { 3: 1, 5: 2, 7: 3 };

const legacyJobSchema = z.object({
  job_id: z.string(),
  dataset_uuid: z.string().nullable(),
  job_type: z.string(),
  status: jobState,
  priority: z.number().describe('1 high, 2 normal, 3 low; other jobd priorities as they are'),
  parameters: z.unknown(),
  progress: z.number().nullable(),
  result: z.unknown(),
  error_message: z.string().nullable(),
  attempts: z.number(),
  created_at: z.date(),
  updated_at: z.date(),
  started_at: z.date().nullable(),
  completed_at: z.date().nullable(),
});

function legacyOf(j: JobDoc): z.infer<typeof legacyJobSchema> {
  return {
    job_id: j._id,
    dataset_uuid: j.datasetUuid ?? null,
    job_type: j.type,
    status: j.state,
    priority: TO_LEGACY[j.priority] ?? j.priority,
    parameters: j.params,
    progress: j.progress?.percent ?? null,
    result: j.result ?? null,
    error_message: j.lastError?.message ?? null,
    attempts: j.attempts,
    created_at: j.createdAt,
    updated_at: j.updatedAt,
    started_at: j.startedAt ?? null,
    completed_at: j.finishedAt ?? null,
  };
}

export function registerLegacyRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const change = access(ctx, 'change');

  app.post(
    '/api/v1/jobs',
    {
      ...change,
      schema: {
        tags,
        summary: 'Create a dataset job (legacy field names)',
        security: change.security,
        body: z.strictObject({
          dataset_uuid: z.string().min(1),
          job_type: z.string().min(1),
          parameters: z.record(z.string(), z.unknown()).default({}),
          priority: z.union([z.literal(1), z.literal(2), z.literal(3)]).optional(),
        }),
        response: { 201: legacyJobSchema, 200: legacyJobSchema, ...PROBLEMS },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const r = await ctx.client.enqueue(b.job_type, b.parameters, {
        datasetUuid: b.dataset_uuid,
        ...(b.priority !== undefined ? { priority: TO_JOBD[b.priority]! } : {}),
      });
      return reply.code(r.created ? 201 : 200).send(legacyOf(r.job));
    },
  );

  app.get(
    '/api/v1/jobs/queue/stats',
    {
      ...read,
      schema: {
        tags,
        summary: 'Jobs per status and per type (legacy shape)',
        security: read.security,
        response: {
          200: z.object({
            total_jobs: z.number(),
            by_status: z.record(jobState, z.number()),
            by_type: z.record(z.string(), z.partialRecord(jobState, z.number())),
          }),
          ...PROBLEMS,
        },
      },
    },
    async () => {
      const [byStatus, rows] = await Promise.all([countByState(ctx.store), depthByTypeState(ctx.store)]);
      const byType: Record<string, Record<string, number>> = {};
      for (const r of rows) (byType[r.type] ??= {})[r.state] = r.count;
      return {
        total_jobs: Object.values(byStatus).reduce((a, b) => a + b, 0),
        by_status: byStatus,
        by_type: byType,
      };
    },
  );

  app.get(
    '/api/v1/jobs/:job_id',
    {
      ...read,
      schema: {
        tags,
        summary: 'One job (legacy field names)',
        security: read.security,
        params: z.object({ job_id: z.string().min(1).max(200) }),
        response: { 200: legacyJobSchema, ...PROBLEMS },
      },
    },
    async (req) => {
      const job = await ctx.jobs.get(req.params.job_id);
      if (!job) throw new HttpProblem(404, 'Not Found', `job ${req.params.job_id} not found`);
      return legacyOf(job);
    },
  );
}
