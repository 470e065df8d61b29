/**
 * External workers: programs in any language pull jobs over HTTP. They claim a job of a queue with a
 * lease, renew it (heartbeat), report progress, then complete or fail it. Every write names the lease
 * token and is fenced by it exactly as the daemon's own writes are: once the lease is gone (expired
 * and rescued, cancelled) the write is refused with 409. These routes call the library's pull API
 * (src/pull/receive.ts), as JobdClient.receive() does.
 */
import { z } from 'zod';
import { LEASE_MS_MAX, LEASE_MS_MIN, ResultRefusedError, WAIT_MS_MAX } from '../../pull/receive.js';
import { HttpProblem } from '../problem.js';
import { jobIdParams, jobSchema } from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const tags = ['workers'];

const leaseMs = z
  .number()
  .int()
  .min(LEASE_MS_MIN)
  .max(LEASE_MS_MAX)
  .describe('lease length in ms; renew it with heartbeat before it runs out');

const leaseToken = z.string().min(1).max(200).describe('the lease token the claim returned');

const claimBody = z
  .strictObject({
    worker: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$/, {
        message: 'must be 1 to 128 letters, digits and _ . : @ / - (starting with a letter or digit)',
      })
      .describe("this worker's name: it shows in `jobctl workers` as ext:<name> and owns the lease"),
    types: z.array(z.string().min(1)).min(1).max(100).optional().describe('only these types of the queue'),
    leaseMs: leaseMs.optional(),
    wait: z
      .number()
      .min(0)
      .max(WAIT_MS_MAX / 1000)
      .optional()
      .describe('seconds to wait for a job when none is due (long poll); 0 answers at once'),
    version: z.string().min(1).max(100).optional().describe("shown as the worker's version"),
  })
  .meta({ id: 'ClaimRequest' });

const claimed = z
  .object({ job: jobSchema, token: z.string(), expiresAt: z.date() })
  .meta({ id: 'ClaimedJob' });

const queueParams = z.object({ queue: z.string().min(1).max(200) });

const heartbeatBody = z.strictObject({ token: leaseToken, leaseMs: leaseMs.optional() });

const progressBody = z.strictObject({
  token: leaseToken,
  percent: z.number().min(0).max(100),
  message: z.string().max(1000).optional(),
});

const logTail = z
  .string()
  .max(64 * 1024)
  .optional()
  .describe("the end of the attempt's log, kept on the job");

const completeBody = z.strictObject({
  token: leaseToken,
  result: z.unknown().optional().describe("checked against the job type's output schema where it has one"),
  logTail,
});

const failBody = z.strictObject({
  token: leaseToken,
  error: z.strictObject({
    message: z
      .string()
      .min(1)
      .max(64 * 1024),
    name: z.string().min(1).max(200).optional(),
    code: z.string().min(1).max(200).optional(),
    details: z.unknown().optional(),
  }),
  retryable: z
    .boolean()
    .optional()
    .describe('false: the job fails for good; otherwise it is retried while attempts are left'),
  logTail,
});

export function registerWorkerRoutes(app: App, ctx: ApiContext): void {
  const work = access(ctx, 'work');
  const pull = ctx.client.pull;
  // Long polls end when the server closes, so they never hold up a daemon's shutdown.
  const closing = new AbortController();
  app.addHook('preClose', (done) => {
    closing.abort();
    done();
  });

  app.post(
    '/api/queues/:queue/claim',
    {
      ...work,
      schema: {
        tags,
        summary: 'Claim the next due job of a queue with a lease (204 when none came within `wait`)',
        security: work.security,
        params: queueParams,
        body: claimBody,
        response: { 200: claimed, 204: z.null(), ...PROBLEMS },
      },
    },
    async (req, reply) => {
      const b = req.body;
      // A worker that hangs up during a long poll stops the wait; a job claimed just as it left is
      // given back (attempt returned) rather than left to its lease.
      const gone = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) gone.abort();
      };
      reply.raw.once('close', onClose);
      try {
        const h = await pull.receive(req.params.queue, {
          worker: b.worker,
          ...(b.types ? { types: b.types } : {}),
          ...(b.leaseMs !== undefined ? { leaseMs: b.leaseMs } : {}),
          ...(b.version !== undefined ? { version: b.version } : {}),
          waitMs: Math.round((b.wait ?? 0) * 1000),
          signal: AbortSignal.any([gone.signal, closing.signal]),
        });
        // Answered because the server closes: the connection goes with it (an idle keep-alive
        // socket would otherwise hold the close up for its whole keep-alive timeout).
        if (closing.signal.aborted) void reply.header('connection', 'close');
        if (!h) return reply.code(204).send(null);
        if (gone.signal.aborted) {
          await pull.giveBack(h.id, h.token, 'claimed for a worker that hung up; attempt given back');
          return reply.code(204).send(null);
        }
        return reply.code(200).send({ job: h.job, token: h.token, expiresAt: h.job.lease!.expiresAt });
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.post(
    '/api/jobs/:id/heartbeat',
    {
      ...work,
      schema: {
        tags,
        summary: 'Extend the lease of a claimed job (409 when the lease is gone)',
        security: work.security,
        params: jobIdParams,
        body: heartbeatBody,
        response: { 200: z.object({ expiresAt: z.date() }), ...PROBLEMS },
      },
    },
    async (req) => ({ expiresAt: await pull.renew(req.params.id, req.body.token, req.body.leaseMs) }),
  );

  app.post(
    '/api/jobs/:id/progress',
    {
      ...work,
      schema: {
        tags,
        summary: 'Record the progress of a claimed job (409 when the lease is gone)',
        security: work.security,
        params: jobIdParams,
        body: progressBody,
        response: { 204: z.null(), ...PROBLEMS },
      },
    },
    async (req, reply) => {
      await pull.progress(req.params.id, req.body.token, req.body.percent, req.body.message);
      return reply.code(204).send(null);
    },
  );

  const refused = (err: unknown): never => {
    if (err instanceof ResultRefusedError) {
      throw new HttpProblem(
        400,
        'Bad Request',
        err.message,
        err.problems.map((p) => ({ path: `body.${p.path}`, message: p.message })),
      );
    }
    throw err;
  };

  app.post(
    '/api/jobs/:id/complete',
    {
      ...work,
      schema: {
        tags,
        summary: 'Complete a claimed job with its result (409 when the lease is gone)',
        security: work.security,
        params: jobIdParams,
        body: completeBody,
        response: { 200: jobSchema, ...PROBLEMS },
      },
    },
    (req) =>
      pull
        .settle(
          { id: req.params.id, token: req.body.token },
          { kind: 'complete', result: req.body.result ?? null },
          req.body.logTail,
        )
        .catch(refused),
  );

  app.post(
    '/api/jobs/:id/fail',
    {
      ...work,
      schema: {
        tags,
        summary: 'Fail the attempt of a claimed job: retried after its backoff, or failed for good',
        security: work.security,
        params: jobIdParams,
        body: failBody,
        response: { 200: jobSchema, ...PROBLEMS },
      },
    },
    (req) => {
      const e = req.body.error;
      return pull.settle(
        { id: req.params.id, token: req.body.token },
        {
          kind: 'fail',
          error: {
            name: e.name ?? 'Error',
            message: e.message,
            ...(e.code !== undefined ? { code: e.code } : {}),
            ...(e.details !== undefined ? { details: e.details } : {}),
          },
          ...(req.body.retryable !== undefined ? { retryable: req.body.retryable } : {}),
        },
        req.body.logTail,
      );
    },
  );
}
