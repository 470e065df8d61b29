/**
 * GET /api/jobs/{id}/logs: a job's whole log from any host (src/ops/jobLogs.ts, as `jobctl logs`), as
 * text/plain; `?follow=1` streams it as it grows and ends when the job has finished.
 */
import { z } from 'zod';
import { followJobLog, readJobLog } from '../../ops/jobLogs.js';
import { redact } from '../../redact.js';
import { logChunksAfter } from '../../store/index.js';
import { get } from '../../store/queries.js';
import { HttpProblem } from '../problem.js';
import { jobIdParams } from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const logsQuerySchema = z.strictObject({
  follow: z
    .enum(['0', '1', 'true', 'false'])
    .optional()
    .describe('1: keep the response open and send new output until the job finishes'),
});

export function registerLogRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const following = new Set<AbortController>();
  // A follow ends (its response complete) when the server shuts down, so app.close() is not held.
  app.addHook('preClose', async () => {
    for (const a of following) a.abort();
  });
  app.get(
    '/api/jobs/:id/logs',
    {
      ...read,
      schema: {
        tags: ['jobs'],
        summary: "A job's output (text/plain), from whichever host ran it",
        description: [
          'The log the daemon that ran the job stored in the database while it ran (up to',
          'worker.logStoreBytes per job; a cut log ends with a line saying so), or the tail kept on the job',
          'when none was stored. Header X-Jobd-Log-Source: database, tail or none. With follow=1 the',
          'response streams new output as it is stored and ends once the job has finished.',
        ].join(' '),
        security: read.security,
        params: jobIdParams,
        querystring: logsQuerySchema,
        produces: ['text/plain'],
        response: { 200: z.string().describe("the job's output"), ...PROBLEMS },
      },
    },
    async (req, reply) => {
      const id = req.params.id;
      const follow = req.query.follow === '1' || req.query.follow === 'true';
      if (!follow) {
        const log = await readJobLog(ctx.store, id);
        return reply
          .type('text/plain; charset=utf-8')
          .header('x-jobd-log-source', log.source)
          .header('x-jobd-log-truncated', String(log.truncated))
          .send(log.text);
      }
      // Checked before the stream starts, so an unknown job is a 404, not an empty 200.
      if (!(await get(ctx.store, id)) && (await logChunksAfter(ctx.store, id, null, 1)).length === 0)
        throw new HttpProblem(404, 'Not Found', `job ${id} not found`);
      const abort = new AbortController();
      following.add(abort);
      reply.hijack();
      const res = reply.raw;
      res.on('close', () => abort.abort());
      res.writeHead(200, {
        'content-type': 'text/plain; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        'x-accel-buffering': 'no',
      });
      try {
        for await (const piece of followJobLog(ctx.store, id, { signal: abort.signal })) {
          // The database holds the log: a slow reader only slows its own reads of it.
          if (!res.write(piece.text)) await new Promise((r) => res.once('drain', r).once('close', r));
          if (res.destroyed) break;
        }
        res.end();
      } catch (err) {
        req.log.warn({ jobId: id, err: redact((err as Error).message) }, 'log follow failed');
        res.destroy();
      } finally {
        following.delete(abort);
      }
    },
  );
}
