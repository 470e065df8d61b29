/**
 * Every error leaves as application/problem+json (RFC 9457): a type, a title, the status, a detail,
 * and for bad input the path of each field at fault (`body.priority`, `query.page_size`).
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import { redact } from '../redact.js';

export const PROBLEM_TYPE = 'application/problem+json';

export interface FieldError {
  path: string;
  message: string;
}

export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    readonly errors?: FieldError[],
  ) {
    super(message);
    this.name = 'HttpProblem';
  }
}

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** jobd's error codes (src/errors.ts) and what they mean over HTTP. */
const STATUS_OF_CODE: Record<string, number> = {
  JOBD_VALIDATION: 400,
  JOBD_CONFIG: 400,
  JOBD_NOT_FOUND: 404,
  JOBD_ILLEGAL_TRANSITION: 409,
  // A worker's write with a lease that is gone (expired and rescued, cancelled, settled).
  JOBD_LEASE_LOST: 409,
  JOBD_DATASET_BUSY: 409,
  JOBD_DATASET_DUPLICATE: 409,
  JOBD_UNKNOWN_JOB_TYPE: 400,
};

export function sendProblem(
  reply: FastifyReply,
  status: number,
  detail: string,
  extra: { title?: string; errors?: FieldError[]; instance?: string } = {},
): FastifyReply {
  const title = extra.title ?? TITLES[status] ?? 'Error';
  return reply
    .code(status)
    .type(PROBLEM_TYPE)
    .send({
      type: 'about:blank',
      title,
      status,
      detail,
      ...(extra.instance ? { instance: extra.instance } : {}),
      ...(extra.errors ? { errors: extra.errors } : {}),
    });
}

function pathOf(context: string | undefined, instancePath: string | undefined): string {
  const where = (context ?? 'body').replace('querystring', 'query');
  const rest = (instancePath ?? '').split('/').filter(Boolean).join('.');
  return rest ? `${where}.${rest}` : where;
}

/** ValidationError messages list one problem a line, naming the field after the job type. */
function validationLines(message: string): FieldError[] {
  return message
    .split('\n')
    .slice(1)
    .map((line) => {
      // `job type "sleep": params.ms = "soon" is not allowed: must be a number of milliseconds`
      const m = /^job type "[^"]+": params((?:\.[^\s=]+|\[\d+\])*) = .*? is not allowed: (.*)$/.exec(line);
      return m ? { path: `body.params${m[1]}`, message: m[2]! } : { path: 'body.params', message: line };
    });
}

export function errorHandler(logger: Logger) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const instance = req.url.split('?')[0];
    if (hasZodFastifySchemaValidationErrors(err)) {
      const errors = err.validation.map((v) => ({
        path: pathOf(err.validationContext, v.instancePath),
        message: v.message ?? 'is not allowed',
      }));
      return sendProblem(reply, 400, errors.map((e) => `${e.path}: ${e.message}`).join('; '), {
        errors,
        instance,
      });
    }
    if (err instanceof HttpProblem) {
      return sendProblem(reply, err.status, err.message, {
        title: err.title,
        ...(err.errors ? { errors: err.errors } : {}),
        instance,
      });
    }
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code in STATUS_OF_CODE) {
      const status = STATUS_OF_CODE[code]!;
      return sendProblem(reply, status, redact(err.message), {
        ...(code === 'JOBD_VALIDATION' ? { errors: validationLines(err.message) } : {}),
        instance,
      });
    }
    // Fastify's own client errors: body too large (413), bad JSON (400), rate limit (429), ...
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) return sendProblem(reply, status, err.message, { instance });
    // A response that does not match its schema: the paths name what drifted (never the values).
    const issues = isResponseSerializationError(err)
      ? err.cause.issues.map((i) => `${i.path.join('.')}: ${i.message}`)
      : undefined;
    logger.error(
      {
        err: { name: err.name, code, message: redact(err.message) },
        method: req.method,
        route: instance,
        ...(issues ? { issues } : {}),
      },
      'http request failed',
    );
    return sendProblem(reply, 500, 'the request failed inside jobd; the daemon log has the details', {
      instance,
    });
  };
}
