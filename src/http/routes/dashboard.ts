/**
 * Reads the dashboard draws from, beside the tracking routes: a job's event history, finished jobs
 * over time (throughput and duration charts), a microscope session's exposures, and images from the
 * data dirs (thumbnails). Each calls a library function, as jobctl would.
 */
import { z } from 'zod';
import { HOUR_MS } from '../../monitor/stats.js';
import { sessionView } from '../../monitor/sessionView.js';
import { childrenWithResults, finishedTimeline } from '../../store/index.js';
import { JOB_STATES } from '../../types.js';
import { readDataImage } from '../imageFile.js';
import { THUMB_EDGE, Thumbnails } from '../thumbnail.js';
import { HttpProblem } from '../problem.js';
import { jobIdParams, jobSchema } from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const eventSchema = z.object({
  seq: z.number().optional(),
  from: z.enum(JOB_STATES).nullable(),
  to: z.enum(JOB_STATES),
  at: z.date(),
  worker: z.string().nullable().optional(),
  attempt: z.number(),
  message: z.string().nullable().optional(),
  recovered: z.boolean().optional(),
});

const timelineSchema = z.object({
  since: z.date(),
  until: z.date(),
  bucketMs: z.number(),
  buckets: z.array(
    z.object({
      at: z.date(),
      completed: z.number(),
      failed: z.number(),
      cancelled: z.number(),
      runP50Ms: z.number().nullable(),
      runP95Ms: z.number().nullable(),
    }),
  ),
});

const stepSchema = z.object({ id: z.string(), state: z.enum(JOB_STATES), error: z.string().nullable() });
const sessionSchema = z.object({
  job: jobSchema,
  sessionDir: z.string().nullable(),
  outputDir: z.string().nullable(),
  counts: z.object({ exposures: z.number(), completed: z.number(), failed: z.number() }),
  exposures: z.array(
    z.object({
      id: z.string(),
      state: z.string(),
      at: z.date().nullable(),
      defocusU: z.number().nullable().describe('Å'),
      defocusV: z.number().nullable().describe('Å'),
      astigmatism: z.number().nullable().describe('|defocus U − defocus V|, Å'),
      astigmatismAngle: z.number().nullable().describe('degrees'),
      fitResolution: z.number().nullable().describe('Å'),
      totalDrift: z.number().nullable().describe('pixels'),
      images: z.object({
        powerSpectrum: z.string().nullable(),
        ctfDiagnostic: z.string().nullable(),
        alignedSum: z.string().nullable().describe("motion correction's aligned sum (MRC)"),
      }),
      jobs: z.object({
        motion: stepSchema.optional(),
        ctf: stepSchema.optional(),
        fft: stepSchema.optional(),
      }),
    }),
  ),
});

export function registerDashboardRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const thumbnails = new Thumbnails(ctx.config.dataDirs);
  const getJob = async (id: string) => {
    const job = await ctx.client.get(id);
    if (!job) throw new HttpProblem(404, 'Not Found', `job ${id} not found`);
    return job;
  };

  app.get(
    '/api/jobs/:id/events',
    {
      ...read,
      schema: {
        tags: ['jobs'],
        summary: "A job's transitions, oldest first (as jobctl show lists them)",
        security: read.security,
        params: jobIdParams,
        response: { 200: z.array(eventSchema), ...PROBLEMS },
      },
    },
    async (req) => {
      const job = await getJob(req.params.id);
      return (await ctx.client.events(job._id)).map(({ _id: _eid, jobId: _jid, ...e }) => e);
    },
  );

  app.get(
    '/api/tracking/timeline',
    {
      ...read,
      schema: {
        tags: ['tracking'],
        summary: 'Jobs finished over the last hours in equal buckets: outcomes and run-time p50/p95',
        security: read.security,
        querystring: z.strictObject({
          hours: z.coerce
            .number()
            .min(0.01)
            .max(24 * 90)
            .default(6),
          buckets: z.coerce.number().int().min(1).max(500).default(36),
          job_type: z.string().min(1).optional(),
        }),
        response: { 200: timelineSchema, ...PROBLEMS },
      },
    },
    async (req) => {
      const until = ctx.clock.now();
      const span = req.query.hours * HOUR_MS;
      const bucketMs = Math.ceil(span / req.query.buckets);
      const since = new Date(until.getTime() - bucketMs * req.query.buckets);
      const buckets = await finishedTimeline(ctx.store, {
        since,
        until,
        bucketMs,
        ...(req.query.job_type !== undefined ? { type: req.query.job_type } : {}),
      });
      return { since, until, bucketMs, buckets };
    },
  );

  app.get(
    '/api/sessions/:id',
    {
      ...read,
      schema: {
        tags: ['sessions'],
        summary:
          "A microscope session (a session_import job): each exposure's defocus, astigmatism, CTF fit resolution, drift and images",
        security: read.security,
        params: jobIdParams,
        response: { 200: sessionSchema, ...PROBLEMS },
      },
    },
    async (req) => {
      const job = await getJob(req.params.id);
      if (job.type !== 'session_import')
        throw new HttpProblem(404, 'Not Found', `job ${job._id} is a ${job.type} job, not a session_import`);
      return sessionView(job, await childrenWithResults(ctx.store, job._id));
    },
  );

  app.get(
    '/api/images',
    {
      ...read,
      schema: {
        tags: ['sessions'],
        summary:
          'An image file inside the data dirs (PNG, JPEG, GIF or WebP, by its content): thumbnails of power spectra and CTF fits',
        security: read.security,
        querystring: z.strictObject({ path: z.string().min(1).max(4096).describe('an absolute path') }),
        response: {
          200: z.any().describe('the image bytes (image/png, image/jpeg, image/gif or image/webp)'),
          ...PROBLEMS,
        },
      },
    },
    async (req, reply) => {
      const img = await readDataImage(req.query.path, ctx.config.dataDirs);
      return reply
        .type(img.type)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'")
        .header('cache-control', 'no-cache')
        .send(img.body);
    },
  );

  app.get(
    '/api/thumbnails',
    {
      ...read,
      schema: {
        tags: ['sessions'],
        summary: `A PNG thumbnail (at most ${THUMB_EDGE} pixels a side) of an MRC image inside the data dirs: the aligned sums`,
        description:
          'The first plane, reduced by 2×2 means and scaled between its 0.5% and 99.5% quantiles. Made once per version of the file and cached.',
        security: read.security,
        querystring: z.strictObject({ path: z.string().min(1).max(4096).describe('an absolute path') }),
        response: { 200: z.any().describe('the thumbnail (image/png)'), ...PROBLEMS },
      },
    },
    async (req, reply) => {
      const png = await thumbnails.of(req.query.path);
      return reply
        .type('image/png')
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'")
        .header('cache-control', 'no-cache')
        .send(png);
    },
  );
}
