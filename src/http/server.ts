/**
 * jobd's HTTP API: a fastify server over the same library functions jobctl calls. Requests and
 * responses are checked against zod schemas (schemas.ts), and /openapi.json is made from them.
 * The daemon starts it when the settings have an `http` section; startHttpServer also serves a store
 * without a daemon (then /metrics has no daemon event counters).
 */
import fastifyCors from '@fastify/cors';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { JobdClient } from '../client.js';
import { systemClock, type Clock } from '../clock.js';
import type { HttpSettings } from '../config/http.js';
import type { ResolvedConfig } from '../config/types.js';
import type { Store } from '../store/index.js';
import { jobdVersion } from '../version.js';
import type { DaemonEvents } from '../worker/events.js';
import type { TypedEmitter } from '../worker/events.js';
import { TokenCheck } from './auth.js';
import { registerDashboard } from './dashboard.js';
import { JobReads } from './jobReads.js';
import { Metrics } from './metrics.js';
import { errorHandler, sendProblem } from './problem.js';
import { lazyRequestLogger } from './requestLogger.js';
import { registerDashboardRoutes } from './routes/dashboard.js';
import { registerEventRoutes } from './routes/events.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerLogRoutes } from './routes/logs.js';
import { registerLegacyRoutes } from './routes/legacy.js';
import { registerReadRoutes } from './routes/reads.js';
import { registerTrackingRoutes } from './routes/tracking.js';
import { registerWorkerRoutes } from './routes/workers.js';
import type { ApiContext, App } from './routes/route.js';

export interface HttpServerOptions {
  config: ResolvedConfig;
  /** Defaults to config.http (which must then be set). */
  http?: HttpSettings;
  store: Store;
  logger: Logger;
  clock?: Clock;
  /** The daemon serving it, for its id and event counters in /metrics. */
  daemon?: { workerId: string; events: TypedEmitter<DaemonEvents> };
}

export interface HttpServer {
  readonly app: App;
  /** http://host:port actually bound (port 0 picks a free one). */
  readonly url: string;
  close(): Promise<void>;
}

export interface ApiRoute {
  method: string;
  url: string;
  /** Left out of the OpenAPI document (/metrics, /openapi.json, the docs page's assets). */
  hidden: boolean;
}

const ROUTES = new WeakMap<object, ApiRoute[]>();

/** Every route the app serves, as registered. */
export function routesOf(app: App): readonly ApiRoute[] {
  return ROUTES.get(app) ?? [];
}

type OpenApiDoc = ReturnType<typeof jsonSchemaTransformObject>;

/**
 * Errors are sent as application/problem+json (problem.ts): the document says so, where the generator
 * lists every response as application/json.
 */
function errorsAsProblems(doc: OpenApiDoc): OpenApiDoc {
  type Responses = Record<string, { content?: Record<string, unknown> }>;
  const paths = (doc as { paths?: Record<string, Record<string, { responses?: Responses }>> }).paths;
  for (const ops of Object.values(paths ?? {}))
    for (const op of Object.values(ops))
      for (const [status, res] of Object.entries(op.responses ?? {})) {
        const json = res.content?.['application/json'];
        if (!/^[45]/.test(status) || !json) continue;
        delete res.content!['application/json'];
        res.content!['application/problem+json'] = json;
      }
  return doc;
}

export async function buildHttpApp(opts: HttpServerOptions): Promise<App> {
  const http = opts.http ?? opts.config.http;
  if (!http) throw new Error('startHttpServer: the settings have no http section');
  const logger = opts.logger.child({ component: 'http' });
  const clock = opts.clock ?? systemClock;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Request lines are not logged: they cost time on every call, and errors are logged on their own.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyRequestLogger,
    bodyLimit: http.bodyLimitBytes,
    routerOptions: { ignoreTrailingSlash: false },
  }).withTypeProvider<ZodTypeProvider>();
  const routes: ApiRoute[] = [];
  ROUTES.set(app, routes);
  app.addHook('onRoute', (r) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    for (const m of methods)
      if (m !== 'HEAD') routes.push({ method: m, url: r.url, hidden: !!r.schema?.hide });
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.setErrorHandler(errorHandler(logger));
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, 404, `no route ${req.method} ${req.url.split('?')[0]}`, {}),
  );

  const auth = new TokenCheck(http.tokens, http.authReads);
  if (http.rateLimit) {
    // Only routes that ask for it (the changing ones) are limited.
    await app.register(fastifyRateLimit, {
      global: false,
      max: http.rateLimit.max,
      timeWindow: http.rateLimit.windowMs,
      errorResponseBuilder: (_req, ctx) => ({
        statusCode: 429,
        message: `rate limit: at most ${ctx.max} changing requests per ${ctx.after}`,
      }),
    });
  }
  if (http.corsOrigins.length > 0) await app.register(fastifyCors, { origin: http.corsOrigins });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'jobd HTTP API',
        version: jobdVersion(),
        description:
          'Jobs, tracking statistics, workflows, schedules, queues and datasets of a jobd installation.',
      },
      components: {
        securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: (input) => errorsAsProblems(jsonSchemaTransformObject(input)),
  });

  const metrics = new Metrics({
    store: opts.store,
    config: opts.config,
    cacheMs: http.metricsCacheMs,
    clock,
    ...(opts.daemon ? { daemon: opts.daemon } : {}),
  });
  const client = JobdClient.over(opts.store, {
    mongoUri: opts.config.mongoUri,
    database: opts.config.database,
    jobTypes: opts.config.jobTypes,
    dataDirs: opts.config.dataDirs,
    defaults: opts.config.defaults,
    clock,
    pull: {
      leaseMs: opts.config.worker.leaseMs,
      errorHistory: opts.config.worker.errorHistory,
      retry: opts.config.defaults.retry,
    },
  });
  const ctx: ApiContext = {
    config: opts.config,
    store: opts.store,
    client,
    jobs: new JobReads(opts.store),
    clock,
    auth,
    rateLimit: http.rateLimit ? { max: http.rateLimit.max, timeWindow: http.rateLimit.windowMs } : null,
  };
  registerJobRoutes(app, ctx);
  registerTrackingRoutes(app, ctx);
  registerLegacyRoutes(app, ctx);
  registerReadRoutes(app, ctx);
  registerDashboardRoutes(app, ctx);
  await registerDashboard(app);
  registerWorkerRoutes(app, ctx);
  registerEventRoutes(app, ctx);
  registerLogRoutes(app, ctx);

  const readHook = auth.hook(auth.needFor('read'));
  app.get('/metrics', { onRequest: readHook, schema: { hide: true } }, async (_req, reply) => {
    const text = await metrics.render();
    return reply.type(metrics.contentType).send(text);
  });
  app.get('/openapi.json', { onRequest: readHook, schema: { hide: true } }, async () => app.swagger());
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    // The docs page reads the same document; its assets ship inside the package (no build step).
    uiConfig: { url: '/openapi.json' },
    uiHooks: { onRequest: readHook },
    staticCSP: true,
    transformSpecificationClone: true,
  });
  app.addHook('onClose', () => metrics.close());
  // A request whose client left still has its read batched: let it finish before the store closes.
  app.addHook('onClose', () => ctx.jobs.idle());
  return app;
}

export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const http = opts.http ?? opts.config.http;
  if (!http) throw new Error('startHttpServer: the settings have no http section');
  const app = await buildHttpApp(opts);
  await app.listen({ host: http.host, port: http.port });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : http.port;
  const host = http.host.includes(':') ? `[${http.host}]` : http.host;
  const url = `http://${host}:${port}`;
  opts.logger.info({ url, auth: http.tokens.length > 0, authReads: http.authReads }, 'http api listening');
  return { app, url, close: () => app.close() };
}
