/** /api/tracking/* and /api/health: the tracking service's statistics, from jobd's monitoring functions. */
import { z } from 'zod';
import { overview } from '../../monitor/overview.js';
import { HOUR_MS, typeStats } from '../../monitor/stats.js';
import { queueSummaries } from '../../queueAdmin.js';
import {
  countByPriority,
  countByState,
  finishedSince,
  listWorkers,
  perfByType,
  ping,
  runningJobs,
} from '../../store/index.js';
import { jobdVersion as jobVersion } from '../../version.js';
import { HttpProblem } from '../problem.js';
import { jobIdParams, jobSchema, jobState, jobTreeSchema, queueSchema, workerSchema } from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const tags = ['tracking'];
const counts = z.record(jobState, z.number());
const hoursQuery = z.strictObject({
  hours: z.coerce
    .number()
    .min(0.01)
    .max(24 * 90)
    .default(1),
});
const limitQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

const typeStatsSchema = z.object({
  type: z.string(),
  states: counts,
  total: z.number(),
  lastHour: z.object({
    completed: z.number(),
    failed: z.number(),
    cancelled: z.number(),
    perMinute: z.number(),
  }),
  avgWallMs: z.number().nullable(),
});

const perfSchema = z.object({
  type: z.string(),
  count: z.number(),
  completed: z.number(),
  failed: z.number(),
  cancelled: z.number(),
  runP50Ms: z.number().nullable(),
  runP95Ms: z.number().nullable(),
  runMaxMs: z.number().nullable(),
  waitP50Ms: z.number().nullable(),
  waitP95Ms: z.number().nullable(),
  attemptsPerJob: z.number().nullable(),
});

const activeJobSchema = jobSchema.pick({
  _id: true,
  type: true,
  progress: true,
  startedAt: true,
  attempts: true,
  datasetUuid: true,
  createdAt: true,
});

export function registerTrackingRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const open = access(ctx, 'open');
  const schema = <T extends object>(summary: string, extra: T) => ({
    tags,
    summary,
    security: read.security,
    ...extra,
  });
  const now = (): Date => ctx.clock.now();

  app.get(
    '/api/tracking/stats',
    {
      ...read,
      schema: schema('Jobs by state and by type, with the last hour', {
        response: {
          200: z.object({
            at: z.date(),
            total: z.number(),
            byStatus: counts,
            byType: z.array(typeStatsSchema),
          }),
          ...PROBLEMS,
        },
      }),
    },
    async () => {
      const at = now();
      const [byStatus, byType] = await Promise.all([countByState(ctx.store), typeStats(ctx.store, at)]);
      return { at, total: Object.values(byStatus).reduce((a, b) => a + b, 0), byStatus, byType };
    },
  );
  app.get(
    '/api/tracking/stats/by-status',
    { ...read, schema: schema('Jobs per state', { response: { 200: counts, ...PROBLEMS } }) },
    () => countByState(ctx.store),
  );
  app.get(
    '/api/tracking/stats/by-type',
    {
      ...read,
      schema: schema('Jobs per type and state, with the last hour', {
        response: { 200: z.array(typeStatsSchema), ...PROBLEMS },
      }),
    },
    () => typeStats(ctx.store, now()),
  );
  app.get(
    '/api/tracking/stats/by-priority',
    {
      ...read,
      schema: schema('Jobs per priority and state', {
        response: {
          200: z.array(z.object({ priority: z.number(), states: counts, total: z.number() })),
          ...PROBLEMS,
        },
      }),
    },
    () => countByPriority(ctx.store),
  );
  app.get(
    '/api/tracking/performance',
    {
      ...read,
      schema: schema('Run and wait time percentiles per type over the last hours', {
        querystring: hoursQuery,
        response: { 200: z.object({ since: z.date(), types: z.array(perfSchema) }), ...PROBLEMS },
      }),
    },
    async (req) => {
      const since = new Date(now().getTime() - req.query.hours * HOUR_MS);
      return { since, types: await perfByType(ctx.store, { since }) };
    },
  );
  app.get(
    '/api/tracking/active-jobs',
    {
      ...read,
      schema: schema('Running jobs, oldest start first', {
        querystring: limitQuery,
        response: { 200: z.array(activeJobSchema.extend({ worker: z.string().nullable() })), ...PROBLEMS },
      }),
    },
    async (req) =>
      (await runningJobs(ctx.store, { limit: req.query.limit })).map((j) => ({
        ...j,
        worker: j.lease?.owner ?? null,
      })),
  );
  app.get(
    '/api/tracking/failed-jobs',
    {
      ...read,
      schema: schema('Failed jobs, newest first', {
        querystring: limitQuery,
        response: { 200: z.array(jobSchema), ...PROBLEMS },
      }),
    },
    (req) => ctx.client.list({ state: 'failed', limit: req.query.limit }),
  );
  app.get(
    '/api/tracking/queue-depth',
    {
      ...read,
      schema: schema('Each queue with its jobs per state and its oldest queued job', {
        response: { 200: z.array(queueSchema), ...PROBLEMS },
      }),
    },
    () => queueSummaries(ctx.store, ctx.config.jobTypes, ctx.config.queues ?? {}, now()),
  );
  app.get(
    '/api/tracking/throughput',
    {
      ...read,
      schema: schema('Jobs finished over the last hours, by outcome, and per minute', {
        querystring: hoursQuery,
        response: {
          200: z.object({
            since: z.date(),
            completed: z.number(),
            failed: z.number(),
            cancelled: z.number(),
            perMinute: z.number(),
          }),
          ...PROBLEMS,
        },
      }),
    },
    async (req) => {
      const since = new Date(now().getTime() - req.query.hours * HOUR_MS);
      const f = await finishedSince(ctx.store, since);
      const perMinute = Number(((f.completed + f.failed) / (req.query.hours * 60)).toFixed(3));
      return { since, ...f, perMinute };
    },
  );
  app.get(
    '/api/tracking/worker-stats',
    {
      ...read,
      schema: schema('Daemons: alive, dead (no heartbeat) or stopped, with what they run', {
        response: { 200: z.array(workerSchema), ...PROBLEMS },
      }),
    },
    () => listWorkers(ctx.store, { now: now(), leaseMs: ctx.config.worker.leaseMs }),
  );
  app.get(
    '/api/tracking/job-tree/:id',
    {
      ...read,
      schema: schema('A job and its descendants', {
        params: jobIdParams,
        response: { 200: jobTreeSchema, ...PROBLEMS },
      }),
    },
    async (req) => {
      const job = await ctx.client.get(req.params.id);
      if (!job) throw new HttpProblem(404, 'Not Found', `job ${req.params.id} not found`);
      const tree = await ctx.client.tree(job._id);
      return { job, subjobs: tree.filter((j) => j._id !== job._id) };
    },
  );
  const healthSchema = z.object({
    verdict: z.enum(['healthy', 'warning', 'critical']),
    reasons: z.array(
      z.object({ level: z.enum(['warning', 'critical']), code: z.string(), message: z.string() }),
    ),
    at: z.date(),
    byState: counts,
    workers: z.object({ alive: z.number(), dead: z.number(), stopped: z.number() }),
  });
  app.get(
    '/api/tracking/health',
    {
      ...read,
      schema: schema("The installation's health verdict, as jobctl overview judges it", {
        response: { 200: healthSchema, ...PROBLEMS },
      }),
    },
    async () => {
      const o = await overview(ctx.store, ctx.config, now());
      return {
        verdict: o.verdict,
        reasons: o.reasons,
        at: o.at,
        byState: o.depth.byState,
        workers: { alive: o.workers.alive, dead: o.workers.dead, stopped: o.workers.stopped },
      };
    },
  );
  app.get(
    '/api/health',
    {
      ...open,
      schema: {
        tags: ['health'],
        summary: 'Liveness: the server answers and reaches its database (503 when it does not)',
        security: [],
        response: {
          200: z.object({ status: z.literal('ok'), version: z.string(), databaseMs: z.number() }),
          ...PROBLEMS,
        },
      },
    },
    async () => {
      try {
        const ms = await ping(ctx.store);
        return { status: 'ok' as const, version: jobVersion(), databaseMs: Math.round(ms * 100) / 100 };
      } catch {
        throw new HttpProblem(503, 'Service Unavailable', 'the database does not answer');
      }
    },
  );
}
