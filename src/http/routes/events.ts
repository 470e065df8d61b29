/**
 * GET /api/events: server-sent events of job transitions, fed by a change stream on the jobs
 * collection (src/store/transitions.ts). Each event's id is the change stream's resume token: a client
 * that reconnects with Last-Event-ID (browsers' EventSource do it by themselves) gets every transition
 * after it, none twice, or 410 when the database no longer has that point in its change history.
 *
 * Backpressure: after each write the server looks at what the socket still holds; above
 * http.eventBufferBytes it stops reading changes for that client (the database keeps them) until the
 * socket drains, and a client that does not drain within http.eventSlowClientMs is dropped, with an
 * `error` event saying so queued last. So a connection's buffer never holds more than the bound plus
 * one event and that closing event (the kernel's socket buffers come on top).
 */
import type { ServerResponse } from 'node:http';
import { z } from 'zod';
import { ChangeStreamsUnavailableError, ResumePointLostError, ValidationError } from '../../errors.js';
import { queueMembership } from '../../queueAdmin.js';
import { redact } from '../../redact.js';
import { openTransitionStream, type Transition, type TransitionStream } from '../../store/index.js';
import { HTTP_DEFAULTS } from '../../config/http.js';
import { HttpProblem } from '../problem.js';
import { jobState } from '../schemas.js';
import { access, PROBLEMS, type ApiContext, type App } from './route.js';

const list = <T extends z.ZodType>(item: T) => z.union([item, z.array(item)]).optional();

export const eventsQuerySchema = z.strictObject({
  type: list(z.string().min(1).max(200)).describe('job type (repeatable)'),
  queue: list(z.string().min(1).max(200)).describe('queue (repeatable)'),
  job: list(z.string().min(1).max(200)).describe('job id (repeatable)'),
  status: list(jobState).describe('the state a transition leads to (repeatable)'),
  last_event_id: z
    .string()
    .min(1)
    .max(4096)
    .optional()
    .describe('resume after this event id, for clients that cannot send the Last-Event-ID header'),
});

export const transitionEventSchema = z
  .object({
    jobId: z.string(),
    type: z.string(),
    queue: z.string(),
    seq: z.number().nullable().describe("the job's transition count after this transition"),
    state: jobState,
    attempt: z.number(),
    worker: z.string().nullable(),
    at: z.string().describe('ISO 8601 time of the transition'),
  })
  .meta({ id: 'TransitionEvent' });

const arr = <T>(v: T | T[] | undefined): T[] | null => (v === undefined ? null : Array.isArray(v) ? v : [v]);

/** One SSE message. Ids are base64url and data is one JSON line, so neither can break the framing. */
function frame(event: string, data: unknown, id?: string): string {
  return `${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

interface Client {
  res: ServerResponse;
  stream: TransitionStream;
  end(reason: string, detail: string, graceMs?: number): void;
}

/** How long a closing stream's last event may wait for the client to read it before the socket goes. */
const CLOSE_GRACE_MS = 5_000;

export function registerEventRoutes(app: App, ctx: ApiContext): void {
  const read = access(ctx, 'read');
  const http = ctx.config.http;
  const heartbeatMs = http?.eventHeartbeatMs ?? HTTP_DEFAULTS.eventHeartbeatMs;
  const bufferBytes = http?.eventBufferBytes ?? HTTP_DEFAULTS.eventBufferBytes;
  const slowClientMs = http?.eventSlowClientMs ?? HTTP_DEFAULTS.eventSlowClientMs;
  const clients = new Set<Client>();
  // The settings do not change while the server runs: which queue a type belongs to is read once.
  let membershipOnce: Promise<Record<string, string>> | null = null;

  // Before the server stops accepting: open streams would otherwise hold app.close() forever.
  app.addHook('preClose', async () => {
    for (const c of [...clients])
      c.end('shutdown', 'the server is shutting down; reconnect with Last-Event-ID');
  });

  app.get(
    '/api/events',
    {
      ...read,
      schema: {
        tags: ['events'],
        summary: 'Server-sent events of job transitions (text/event-stream), resumable with Last-Event-ID',
        description: [
          'Every transition of every job (its insert, then each state change) as an SSE event `transition`',
          'whose data is a TransitionEvent and whose `id` resumes the stream: send it back as the',
          '`Last-Event-ID` header (or `last_event_id`) and the stream goes on right after it, nothing missed',
          'and nothing twice. A resume point the database no longer has gets 410. Transitions of one job',
          'arrive in order (`seq` counts up by one). Filters: `type`, `queue`, `job`, `status` (each',
          'repeatable; different filters must all match). `: heartbeat` comment lines come every',
          'http.eventHeartbeatMs. The stream ends with an `error` event (data `{ reason, detail }`) when the',
          'client is too slow to read (`slow-client`), the server shuts down (`shutdown`) or the change',
          'stream fails (`stream-failed`); reconnect with the last id to go on.',
        ].join(' '),
        security: read.security,
        querystring: eventsQuerySchema,
        headers: z.object({ 'last-event-id': z.string().max(4096).optional() }),
        produces: ['text/event-stream'],
        response: {
          200: transitionEventSchema.describe(
            'text/event-stream of `transition` events; this is the data of each',
          ),
          ...PROBLEMS,
        },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const header = req.headers['last-event-id'];
      const resumeAfter =
        q.last_event_id ?? (typeof header === 'string' && header !== '' ? header : undefined);
      const jobs = arr(q.job);
      const states = arr(q.status);
      const types = arr(q.type);
      const queues = arr(q.queue);
      const membership = await (membershipOnce ??= queueMembership(ctx.config.jobTypes));
      const queueOf = (type: string): string => membership[type] ?? type;
      const wanted = (t: Transition): boolean =>
        (!jobs || jobs.includes(t.jobId)) &&
        (!states || states.includes(t.state)) &&
        (!types || types.includes(t.type)) &&
        (!queues || queues.includes(queueOf(t.type)));

      let stream: TransitionStream;
      try {
        stream = await openTransitionStream(ctx.store, {
          ...(resumeAfter !== undefined ? { resumeAfter } : {}),
          ...(jobs?.length === 1 ? { jobId: jobs[0]! } : {}),
          field: q.last_event_id !== undefined ? 'query.last_event_id' : 'header Last-Event-ID',
        });
      } catch (err) {
        if (err instanceof ResumePointLostError) throw new HttpProblem(410, 'Gone', err.message);
        if (err instanceof ChangeStreamsUnavailableError)
          throw new HttpProblem(503, 'Service Unavailable', err.message);
        if (err instanceof ValidationError) {
          const path = q.last_event_id !== undefined ? 'query.last_event_id' : 'headers.last-event-id';
          throw new HttpProblem(400, 'Bad Request', err.message, [{ path, message: err.message }]);
        }
        throw err;
      }

      reply.hijack();
      const res = reply.raw;
      // The connection ends with the stream (`Connection: close`): a stream ended by the server, for a
      // slow client above all, must not leave an idle keep-alive socket holding what it did not read.
      res.shouldKeepAlive = false;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        // nginx and similar proxies would otherwise buffer the stream.
        'x-accel-buffering': 'no',
      });
      // Browsers retry after this; the first comment lets a client know the stream is established.
      res.write('retry: 2000\n: connected\n\n');

      let done = false;
      let lastId: string | null = resumeAfter ?? null;
      let dropTimer: NodeJS.Timeout | null = null;
      const client: Client = {
        res,
        stream,
        end(reason, detail, graceMs = CLOSE_GRACE_MS) {
          if (done) return;
          done = true;
          clients.delete(client);
          clearInterval(beat);
          void stream.close();
          if (res.destroyed) return;
          res.end(frame('error', { reason, detail }));
          // A client that does not read even this is cut off: its unsent bytes go with the socket.
          dropTimer = setTimeout(() => res.destroy(), graceMs);
          dropTimer.unref();
        },
      };
      clients.add(client);
      res.on('close', () => {
        if (dropTimer) clearTimeout(dropTimer);
        if (done) return;
        done = true;
        clients.delete(client);
        clearInterval(beat);
        void stream.close();
      });

      const beat = setInterval(() => {
        if (done || res.writableLength > bufferBytes) return;
        // An id-only block moves the client's resume point past changes it was not shown (filtered
        // out), so a quiet filtered stream does not fall behind the database's change history.
        const pos = stream.position();
        const idLine = pos && pos !== lastId ? `id: ${pos}\n` : '';
        if (idLine) lastId = pos;
        res.write(`${idLine}: heartbeat\n\n`);
      }, heartbeatMs);
      beat.unref();

      // Each event's write calls back once it has left jobd's buffer for the kernel; that, not 'drain'
      // (emitted only after a write returned false, i.e. above the socket's own high-water mark), is
      // when the buffer may have gone back under bufferBytes.
      let onFlushed: (() => void) | null = null;
      const flushed = () => onFlushed?.();

      /** Resolves true once the socket holds at most bufferBytes again, false after slowClientMs. */
      const drained = (): Promise<boolean> =>
        new Promise((resolve) => {
          const check = () => {
            if (res.writableLength <= bufferBytes || done) finish(true);
          };
          const finish = (ok: boolean) => {
            clearTimeout(timer);
            onFlushed = null;
            res.off('close', onClose);
            resolve(ok);
          };
          const onClose = () => finish(true);
          const timer = setTimeout(() => finish(false), slowClientMs);
          onFlushed = check;
          res.on('close', onClose);
          check();
        });

      try {
        while (!done) {
          const next = await stream.next();
          if (next === null || done) break;
          if (!wanted(next.transition)) continue;
          const t = next.transition;
          lastId = next.id;
          res.write(
            frame('transition', { ...t, queue: queueOf(t.type), at: t.at.toISOString() }, next.id),
            flushed,
          );
          if (res.writableLength > bufferBytes && !(await drained())) {
            req.log.warn(
              { bufferedBytes: res.writableLength, slowClientMs },
              'event stream client too slow: dropped',
            );
            client.end(
              'slow-client',
              `the client left more than ${bufferBytes} bytes unread for ${slowClientMs} ms; reconnect with Last-Event-ID`,
              // It has not read for slowClientMs already; waiting longer only keeps its buffer.
              Math.min(CLOSE_GRACE_MS, slowClientMs),
            );
          }
        }
      } catch (err) {
        const lost = err instanceof ResumePointLostError;
        req.log.warn({ err: redact((err as Error).message) }, 'event stream failed');
        client.end(lost ? 'resume-point-lost' : 'stream-failed', (err as Error).message);
      }
    },
  );
}
