/** /api/jobs: the job-tracking service's job routes, over JobdClient. */
import { z } from 'zod';
import type { ListOptions } from '../../store/index.js';
import type { EnqueueOptions, JobDoc } from '../../types.js';
import { fastSerializerCompiler } from '../fastSerializer.js';
import { HttpProblem } from '../problem.js';
import {
  enqueueResultSchema,
  jobEditSchema,
  jobIdParams,
  jobPageSchema,
  jobSchema,
  jobTreeSchema,
  listQuerySchema,
  newJobSchema,
  newJobWithSubjobsSchema,
} from '../schemas.js';
import { access, PROBLEMS, typesOfQueueName, type ApiContext, type App } from './route.js';

const tags = ['jobs'];

type NewJob = z.infer<typeof newJobSchema>;

function optionsOf(j: Omit<NewJob, 'type' | 'params'>): EnqueueOptions {
  const o: EnqueueOptions = {};
  for (const [k, v] of Object.entries(j)) if (v !== undefined) (o as Record<string, unknown>)[k] = v;
  return o;
}

/** A cursor is the last job's creation time and id, opaque to clients. */
function encodeCursor(job: JobDoc): string {
  return Buffer.from(JSON.stringify([job.createdAt.getTime(), job._id])).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  try {
    const [t, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[];
    if (typeof t === 'number' && typeof id === 'string') return { createdAt: new Date(t), id };
  } catch {
    /* refused below */
  }
  throw new HttpProblem(400, 'Bad Request', 'query.cursor: not a cursor this API gave (next_cursor)', [
    { path: 'query.cursor', message: 'not a cursor this API gave (next_cursor)' },
  ]);
}

async function getJob(ctx: ApiContext, id: string): Promise<JobDoc> {
  const job = await ctx.jobs.get(id);
  if (!job) throw new HttpProblem(404, 'Not Found', `job ${id} not found`);
  return job;
}

export function registerJobRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const change = access(ctx, 'change');

  app.post(
    '/api/jobs/',
    {
      ...change,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'Enqueue a job (its params are checked against its type input schema)',
        security: change.security,
        body: newJobSchema,
        response: { 200: enqueueResultSchema, 201: enqueueResultSchema, ...PROBLEMS },
      },
    },
    async (req, reply) => {
      const { type, params, ...rest } = req.body;
      const r = await ctx.client.enqueue(type, params ?? {}, optionsOf(rest));
      return reply.code(r.created ? 201 : 200).send(r);
    },
  );

  app.post(
    '/api/jobs/with-subjobs',
    {
      ...change,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'Enqueue a job and sub-jobs that each depend on it',
        security: change.security,
        body: newJobWithSubjobsSchema,
        response: { 201: jobTreeSchema, ...PROBLEMS },
      },
    },
    async (req, reply) => {
      const { type, params, subjobs, ...rest } = req.body;
      const parent = await ctx.client.enqueue(type, params ?? {}, optionsOf(rest));
      const children = await ctx.client.enqueueMany(
        subjobs.map(({ type: t, params: p, ...o }) => ({
          type: t,
          params: p ?? {},
          options: { ...optionsOf(o), dependsOn: [parent.job._id] },
        })),
      );
      return reply.code(201).send({ job: parent.job, subjobs: children.map((c) => c.job) });
    },
  );

  app.get(
    '/api/jobs/',
    {
      ...read,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'List jobs, newest first, by page/page_size or cursor',
        security: read.security,
        querystring: listQuerySchema,
        response: { 200: jobPageSchema, ...PROBLEMS },
      },
    },
    async (req) => {
      const q = req.query;
      if (q.page !== undefined && q.cursor !== undefined)
        throw new HttpProblem(400, 'Bad Request', 'query.cursor: give page or cursor, not both', [
          { path: 'query.cursor', message: 'give page or cursor, not both' },
        ]);
      const filter: ListOptions = {};
      if (q.status !== undefined) filter.state = q.status;
      if (q.priority !== undefined) filter.priority = q.priority;
      if (q.dataset !== undefined) filter.datasetUuid = q.dataset;
      if (q.tag !== undefined) filter.tag = q.tag;
      if (q.queue !== undefined) {
        const types = await typesOfQueueName(ctx, q.queue);
        filter.type = q.job_type !== undefined ? types.filter((t) => t === q.job_type) : types;
      } else if (q.job_type !== undefined) filter.type = q.job_type;
      const size = q.page_size;
      const paged = q.cursor === undefined;
      const page = q.page ?? 1;
      const [items, total] = await Promise.all([
        ctx.client.list({
          ...filter,
          limit: size + 1,
          ...(paged ? { skip: (page - 1) * size } : { after: decodeCursor(q.cursor!) }),
        }),
        paged ? ctx.client.count(filter) : Promise.resolve(null),
      ]);
      const more = items.length > size;
      const shown = more ? items.slice(0, size) : items;
      return {
        items: shown,
        page: paged ? page : null,
        page_size: size,
        total,
        next_cursor: more ? encodeCursor(shown[shown.length - 1]!) : null,
      };
    },
  );

  app.get(
    '/api/jobs/:id',
    {
      ...read,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'One job',
        security: read.security,
        params: jobIdParams,
        response: { 200: jobSchema, ...PROBLEMS },
      },
    },
    (req) => getJob(ctx, req.params.id),
  );

  app.get(
    '/api/jobs/:id/with-subjobs',
    {
      ...read,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'A job and all its descendants (spawned children and with-subjobs sub-jobs)',
        security: read.security,
        params: jobIdParams,
        response: { 200: jobTreeSchema, ...PROBLEMS },
      },
    },
    async (req) => {
      const job = await getJob(ctx, req.params.id);
      const [tree, dependents] = await Promise.all([
        ctx.client.tree(job._id),
        ctx.client.dependentsOf(job._id),
      ]);
      const seen = new Set<string>([job._id]);
      const subjobs = [...tree, ...dependents].filter((j) => !seen.has(j._id) && seen.add(j._id));
      return { job, subjobs };
    },
  );

  app.put(
    '/api/jobs/:id',
    {
      ...change,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'Change priority, runAt or tags of a job that is not running or finished',
        security: change.security,
        params: jobIdParams,
        body: jobEditSchema,
        response: { 200: jobSchema, ...PROBLEMS },
      },
    },
    (req) => {
      const e = req.body;
      return ctx.client.edit(req.params.id, {
        ...(e.priority !== undefined ? { priority: e.priority } : {}),
        ...(e.runAt !== undefined ? { runAt: e.runAt } : {}),
        ...(e.tags !== undefined ? { tags: e.tags } : {}),
      });
    },
  );

  app.delete(
    '/api/jobs/:id',
    {
      ...change,
      serializerCompiler: fastSerializerCompiler,
      schema: {
        tags,
        summary: 'Delete a finished job and its history',
        security: change.security,
        params: jobIdParams,
        response: { 204: z.null(), ...PROBLEMS },
      },
    },
    async (req, reply) => {
      await ctx.client.remove(req.params.id);
      return reply.code(204).send(null);
    },
  );

  const action = (
    name: 'start' | 'cancel' | 'retry',
    summary: string,
    run: (id: string) => Promise<JobDoc>,
  ): void => {
    app.post(
      `/api/jobs/:id/${name}`,
      {
        ...change,
        serializerCompiler: fastSerializerCompiler,
        schema: {
          tags,
          summary,
          security: change.security,
          params: jobIdParams,
          response: { 200: jobSchema, ...PROBLEMS },
        },
      },
      (req) => run(req.params.id),
    );
  };
  action('start', 'Run a queued or retrying job now (its runAt becomes now)', (id) => ctx.client.runNow(id));
  action('cancel', 'Cancel a job that has not finished (a running one is killed)', (id) =>
    ctx.client.cancel(id),
  );
  action('retry', 'Retry a failed or cancelled job with fresh attempts', (id) => ctx.client.retry(id));
}
