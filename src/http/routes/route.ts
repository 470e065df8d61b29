/** What every route module gets, and the one way routes declare who may call them. */
import type { JobReads } from '../jobReads.js';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { JobdClient } from '../../client.js';
import type { Clock } from '../../clock.js';
import type { ResolvedConfig } from '../../config/types.js';
import { queueMembership, typesOfQueue } from '../../queueAdmin.js';
import type { Store } from '../../store/index.js';
import type { TokenCheck } from '../auth.js';
import { problemSchema } from '../schemas.js';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  ZodTypeProvider
>;

export interface ApiContext {
  config: ResolvedConfig;
  store: Store;
  client: JobdClient;
  /** Single-job reads, batched (GET /api/jobs/{id} and its kin). */
  jobs: JobReads;
  clock: Clock;
  auth: TokenCheck;
  /** @fastify/rate-limit's per-route setting for changing routes (null: no limit). */
  rateLimit: { max: number; timeWindow: number } | null;
}

/** Every route answers errors as problem+json. */
export const PROBLEMS = { '4xx': problemSchema, '5xx': problemSchema } as const;

/**
 * Route options by kind: reads (a token only with http.authReads), changes (an admin token,
 * rate-limited) or the external worker routes (a worker or admin token, rate-limited).
 */
export function access(ctx: ApiContext, kind: 'read' | 'change' | 'work' | 'open') {
  const need = ctx.auth.needFor(kind);
  return {
    // A route open to all has no hook at all: even an empty one costs a promise on every request.
    ...(need === 'none' ? {} : { onRequest: ctx.auth.hook(need) }),
    ...((kind === 'change' || kind === 'work') && ctx.rateLimit
      ? { config: { rateLimit: ctx.rateLimit } }
      : {}),
    security: need === 'none' ? [] : [{ bearer: [] }],
  };
}

/** The job types of a queue, by these settings (a queue not named by any type is a type's name). */
export async function typesOfQueueName(ctx: ApiContext, queue: string): Promise<string[]> {
  return typesOfQueue(queue, await queueMembership(ctx.config.jobTypes));
}
