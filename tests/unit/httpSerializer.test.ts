/**
 * The compiled response serializer of the job routes against zod's check-then-stringify, over jobs
 * with every field the schema has (set, null, absent): the same JSON, the same refusals.
 */
import { serializerCompiler as zodSerializerCompiler } from 'fastify-type-provider-zod';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { fastSerializerCompiler } from '../../src/http/fastSerializer.js';
import {
  enqueueResultSchema,
  jobPageSchema,
  jobSchema,
  jobTreeSchema,
  problemSchema,
} from '../../src/http/schemas.js';

type Serialize = (data: unknown) => string;
const both = (schema: z.ZodType): { fast: Serialize; zod: Serialize } => {
  const route = { schema, method: 'GET', url: '/x', httpStatus: '200' };
  return {
    fast: fastSerializerCompiler(route as never),
    zod: zodSerializerCompiler(route as never) as Serialize,
  };
};

const at = new Date('2026-01-02T03:04:05.678Z');
const later = new Date('2026-01-02T03:05:00.001Z');
const error = (attempt: number) => ({
  name: 'JobError',
  code: 'E_TIMEOUT',
  message: 'timed out after 5 s',
  stack: 'Error: timed out\n    at run',
  details: { limitMs: 5000, nested: [1, 'two', null] },
  at,
  attempt,
  worker: 'host-1:123',
});

const queued = {
  _id: 'j_queued',
  type: 'echo',
  params: { hello: 'world', n: 3, list: [1, 2], deep: { a: null } },
  state: 'queued',
  priority: 50,
  runAt: at,
  attempts: 0,
  maxAttempts: 3,
  timeoutMs: null,
  errors: [],
  createdAt: at,
  updatedAt: at,
  tags: [],
};

const full = {
  ...queued,
  _id: 'j_full',
  state: 'failed',
  attempts: 2,
  timeoutMs: 5000,
  lease: { owner: 'host-1:123', token: 'tok', expiresAt: later },
  progress: { percent: 42.5, message: 'half "way" \\ there\n', updatedAt: later },
  result: { ok: false, values: [1.5, -2, 'x'] },
  lastError: error(2),
  errors: [error(1), error(2)],
  resources: { peakRssBytes: 1048576, cpuMs: 12, wallMs: 30 },
  logTail: 'line 1\nline 2 \u00e9\u4e2d',
  startedAt: at,
  finishedAt: later,
  datasetUuid: 'ds-1',
  dedupeKey: 'k1',
  tags: ['a', 'b'],
  seq: 7,
  scheduleId: 's1',
  fireKey: 'f1',
  hookErrors: [{ name: 'Error', message: 'hook', hook: 'onFail', attempt: 2, at }],
  dependsOn: ['j_queued'],
  onDependencyFailure: 'skip',
  depsLeft: 0,
  waitingFor: 'children',
  releasePending: false,
  hasDependents: true,
  dependenciesMarked: true,
  blockedBy: null,
  workflowId: 'w1',
  workflowKey: 'step',
  parentId: null,
  spawnKey: 'sk',
  childPolicy: 'continue',
  resumes: 1,
  upstream: ['j_x'],
};

const nulls = {
  ...queued,
  _id: 'j_nulls',
  maxAttempts: null,
  lease: null,
  progress: null,
  lastError: null,
  resources: null,
  logTail: null,
  startedAt: null,
  finishedAt: null,
  datasetUuid: null,
  dedupeKey: null,
  waitingFor: null,
  blockedBy: null,
  workflowId: null,
  workflowKey: null,
  parentId: null,
  result: null,
  params: 'a string',
};

describe('fastSerializerCompiler', () => {
  it('writes the same JSON as zod for jobs with every field set, null or absent', () => {
    const job = both(jobSchema);
    for (const doc of [queued, full, nulls]) {
      expect(JSON.parse(job.fast(doc)), doc._id).toEqual(JSON.parse(job.zod(doc)));
    }
    const enqueued = both(enqueueResultSchema);
    expect(JSON.parse(enqueued.fast({ job: full, created: true }))).toEqual(
      JSON.parse(enqueued.zod({ job: full, created: true })),
    );
    const tree = both(jobTreeSchema);
    const t = { job: full, subjobs: [queued, nulls] };
    expect(JSON.parse(tree.fast(t))).toEqual(JSON.parse(tree.zod(t)));
    const page = both(jobPageSchema);
    const p = { items: [queued, full, nulls], page: 1, page_size: 3, total: 9, next_cursor: null };
    expect(JSON.parse(page.fast(p))).toEqual(JSON.parse(page.zod(p)));
    const problem = both(problemSchema);
    const pr = { type: 'about:blank', title: 'Not Found', status: 404, detail: 'job j_1 not found' };
    expect(JSON.parse(problem.fast(pr))).toEqual(JSON.parse(problem.zod(pr)));
  });

  it('leaves out fields the schema does not have, as zod does', () => {
    const job = both(jobSchema);
    const doc = { ...full, leaseToken: 'secret', _internal: { x: 1 } };
    const out = JSON.parse(job.fast(doc)) as Record<string, unknown>;
    expect(out).not.toHaveProperty('leaseToken');
    expect(out).not.toHaveProperty('_internal');
    expect(out).toEqual(JSON.parse(job.zod(doc)));
  });

  it('refuses a job without a required field, as zod does', () => {
    const job = both(jobSchema);
    const { createdAt: _c, ...noCreatedAt } = queued;
    expect(() => job.zod(noCreatedAt)).toThrow();
    expect(() => job.fast(noCreatedAt)).toThrow(/createdAt/);
  });

  it("keeps zod's serializer for a schema that transforms on the way out", () => {
    // Encoding turns the number back into its string: a JSON Schema of either side would be wrong.
    const schema = z.object({ n: z.codec(z.string(), z.number(), { decode: Number, encode: String }) });
    const s = both(schema);
    expect(s.zod({ n: 3 })).toBe('{"n":"3"}');
    expect(s.fast({ n: 3 })).toBe('{"n":"3"}');
  });
});
