import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { TABULAR_TYPES } from './typeDefaults.js';
import { runIngestCore } from './ingestKit.js';
import { handedSources } from './sources.js';

/** Built-in job type `api_ingestion`: the pages of an HTTP API to an NDJSON record file, resumable. */
export default defineJobType({
  name: 'api_ingestion',
  description:
    'Reads the pages of an HTTP API (a source of the settings: URL and secret headers) to an NDJSON file: page/size, cursor or Link pagination, a rate limit, retries on 429/5xx honouring Retry-After, and resumption after a crash from the last page written.',
  schemas: (z) => {
    const PARAM = z
      .string({ error: 'must be a parameter name' })
      .regex(/^[A-Za-z0-9_.[\]-]{1,64}$/, { error: 'must be a parameter name (letters, digits, _ . - [ ])' });
    const JSON_PATH = z
      .string({ error: 'must be a dot path, e.g. "data.items" ("" for the whole body)' })
      .regex(/^(\$(\.[^.]+)*|[^.$][^.]*(\.[^.]+)*)?$/, {
        error: 'must be a dot path, e.g. "data.items" ("" for the whole body)',
      });
    const WHERE = z.enum(['query', 'body'], { error: 'must be query or body' }).default('query');
    const pagination = z.discriminatedUnion(
      'style',
      [
        z.strictObject({ style: z.literal('none') }),
        z.strictObject({
          style: z.literal('page'),
          page_param: PARAM.default('page'),
          size_param: PARAM.default('per_page'),
          size: z.number().int().min(1).max(100_000).default(100),
          first_page: z.number().int().min(0).default(1),
          in: WHERE,
        }),
        z.strictObject({
          style: z.literal('cursor'),
          cursor_path: JSON_PATH.describe(
            "where the next page's cursor is in the body; absent or null: the last page",
          ),
          cursor_param: PARAM.default('cursor'),
          in: WHERE,
        }),
        z.strictObject({ style: z.literal('link') }),
      ],
      {
        error:
          'must be { "style": "none" }, { "style": "page", ... }, { "style": "cursor", "cursor_path": "..." } or { "style": "link" }',
      },
    );
    return {
      input: z
        .strictObject({
          source: z
            .string({ error: "must be the name of an http source of the settings' tabular.sources" })
            .regex(/^[A-Za-z][A-Za-z0-9_-]{0,63}$/, {
              error: "must be the name of an http source of the settings' tabular.sources",
            }),
          path: z
            .string({ error: 'must be a path under the source\'s baseUrl, e.g. "orders"' })
            .refine((p) => !/^[A-Za-z][A-Za-z0-9+.-]*:|^\/\//.test(p), {
              error: "must be a path under the source's baseUrl (not a URL of its own)",
            })
            .default('')
            .describe('a path under the source\'s baseUrl, e.g. "orders"'),
          method: z.enum(['GET', 'POST'], { error: 'must be GET or POST' }).default('GET'),
          query: z
            .record(z.string(), z.union([z.string(), z.number(), z.boolean()]), {
              error: 'must be an object of query parameters ({ "status": "open" })',
            })
            .optional(),
          body: z
            .record(z.string(), z.unknown(), { error: 'must be a JSON object (the POST body)' })
            .optional()
            .describe('POST: the JSON body (pagination may add its parameters to it)'),
          records_path: JSON_PATH.default('').describe(
            'where the records are in each page ("" : the body is the array)',
          ),
          pagination: pagination.default({ style: 'none' }),
          max_pages: z.number().int().min(1).optional(),
          requests_per_second: z
            .number({ error: 'must be a number of requests per second from 0.001 to 10000' })
            .min(0.001, { error: 'must be a number of requests per second from 0.001 to 10000' })
            .max(10_000, { error: 'must be a number of requests per second from 0.001 to 10000' })
            .optional()
            .describe("at most this many requests per second (and never more than the source's)"),
          timeout_ms: z.number().int().min(100).max(3_600_000).optional().describe('per request'),
          max_retries: z
            .number()
            .int()
            .min(0)
            .max(100)
            .default(5)
            .describe('per request, on 429, 5xx and timeouts'),
          max_retry_after_ms: z
            .number()
            .int()
            .min(0)
            .default(120_000)
            .describe("a longer Retry-After ends the attempt; the job's next attempt resumes"),
          output: dataPath({ mode: 'write', description: 'the NDJSON file to write' }),
        })
        .superRefine((v, ctx) => {
          if (v.method === 'GET' && v.body !== undefined) {
            ctx.addIssue({
              code: 'custom',
              path: ['body'],
              message: 'a GET request has no body (use method POST)',
            });
          }
          if (v.method === 'GET' && 'in' in v.pagination && v.pagination.in === 'body') {
            ctx.addIssue({
              code: 'custom',
              path: ['pagination', 'in'],
              message: 'a GET request has no body: pagination parameters go in the query',
            });
          }
        }),
      output: z.strictObject({
        source: z.string(),
        output: z.string(),
        pages: z.number().int().min(0),
        records: z.number().int().min(0),
        requests: z.number().int().min(0),
        retries: z.number().int().min(0),
        bytes_written: z.number().min(0),
        resumed_at_page: z.number().int().min(0),
        duration_ms: z.number().min(0),
      }),
    };
  },
  defaults: TABULAR_TYPES.api_ingestion,
  handler: async (input, ctx) => {
    const { apiIngest } = await import('./lib/apiIngest.js');
    const sources = handedSources();
    return runIngestCore((i: typeof input, c) => apiIngest(i, c, { sources }), input, ctx, [input.output]);
  },
});
