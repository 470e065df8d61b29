/** defineJobType, legacyNames, dataPath and the catalog, in process (no database). */
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { dataPath, mayDeclarePaths } from '../../src/jobs/dataPath.js';
import { defineJobType, legacyNames, parseInput } from '../../src/jobs/defineJobType.js';
import { checkInputs } from '../../src/jobs/checkInputs.js';
import { jsonSchemas, loadCatalog } from '../../src/jobs/catalog.js';
import { BUILTIN_JOB_TYPES, builtinJobTypes, isOwnBuiltin } from '../../src/jobs/registry.js';
import { queueMembership } from '../../src/queueAdmin.js';
import { ValidationError } from '../../src/errors.js';
import type { JobContext } from '../../src/types.js';

const DEFAULTS = {
  mode: 'pooled' as const,
  timeoutMs: 1000,
  maxAttempts: 1,
  priority: 5,
  retry: { baseMs: 1, factor: 2, capMs: 10, jitter: 0 },
};

function ctx(): JobContext {
  return {
    jobId: 'j1',
    type: 't',
    attempt: 1,
    progress: () => {},
    signal: new AbortController().signal,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
    paths: { log: '/dev/null' },
    spawn: () => {
      throw new Error('not spawned in these tests');
    },
    waitForChildren: () => {
      throw new Error('not waited for in these tests');
    },
  };
}

function dataRoot(): { raw: string; processed: string; outside: string } {
  const base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-types-')));
  const dirs = { raw: join(base, 'raw'), processed: join(base, 'processed'), outside: join(base, 'outside') };
  for (const d of Object.values(dirs)) mkdirSync(d);
  return dirs;
}

const copy = defineJobType({
  name: 'copy',
  description: 'copies',
  queue: 'files',
  input: legacyNames(
    z.strictObject({
      source: dataPath({ dirs: ['raw'], mode: 'read' }),
      target: dataPath({ dirs: ['processed'], mode: 'write' }),
      level: z.number().int().min(1).max(9).default(3),
    }),
    { input_path: 'source' },
  ),
  output: z.strictObject({ wrote: z.string() }),
  handler: async (input, c) => ({ wrote: await c.checkWrite(input.target) }),
});

const savedEnv = process.env.JOBD_DATA_DIRS;
afterEach(() => {
  if (savedEnv === undefined) delete process.env.JOBD_DATA_DIRS;
  else process.env.JOBD_DATA_DIRS = savedEnv;
});

describe('defineJobType', () => {
  it('refuses a field of the wrong type naming its path, value and what is allowed', async () => {
    const d = dataRoot();
    const r = await parseInput(
      copy,
      { source: join(d.raw, 'a'), target: join(d.processed, 'b'), level: 'high' },
      { raw: d.raw, processed: d.processed },
      'enqueue',
    );
    expect(r.ok).toBe(false);
    expect(!r.ok && r.problems).toEqual([
      'params.level = "high" is not allowed: expected number, received string',
    ]);
  });

  it('takes any input as it is for z.unknown(), and still applies what a schema adds to it', async () => {
    const params = { a: [1, 2] };
    const any = await parseInput({ input: z.unknown(), legacyNames: {} }, params, {}, 'run');
    expect(any.ok && any.input).toBe(params);
    const refined = { input: z.unknown().refine((v) => v !== 1, 'not one'), legacyNames: {} };
    expect((await parseInput(refined, 1, {}, 'run')).ok).toBe(false);
    const defaulted = await parseInput({ input: z.any().default(7), legacyNames: {} }, undefined, {}, 'run');
    expect(defaulted.ok && defaulted.input).toBe(7);
    const nothing = defineJobType({ name: 'nothing', description: 'x', input: z.unknown(), output: z.null(), handler: () => 'x' as never });
    await expect(nothing.handler({}, {} as JobContext)).rejects.toThrow(/output does not match/);
    const none = defineJobType({ name: 'none', description: 'x', input: z.unknown(), output: z.null(), handler: () => null });
    await expect(none.handler({}, {} as JobContext)).resolves.toBeNull();
  });

  it('accepts a legacy field name, and refuses it given together with the new name', async () => {
    const d = dataRoot();
    const dirs = { raw: d.raw, processed: d.processed };
    const ok = await parseInput(
      copy,
      { input_path: join(d.raw, 'a'), target: join(d.processed, 'b') },
      dirs,
      'enqueue',
    );
    expect(ok).toMatchObject({ ok: true, input: { source: join(d.raw, 'a'), level: 3 } });
    const both = await parseInput(
      copy,
      { input_path: join(d.raw, 'a'), source: join(d.raw, 'a'), target: join(d.processed, 'b') },
      dirs,
      'enqueue',
    );
    expect(!both.ok && both.problems.join('\n')).toContain(
      'give source or its legacy name input_path, not both',
    );
    const badLegacy = await parseInput(
      copy,
      { input_path: 7, target: join(d.processed, 'b') },
      dirs,
      'enqueue',
    );
    expect(!badLegacy.ok && badLegacy.problems[0]).toMatch(
      /^params\.input_path \(legacy name of source\) = 7 is not allowed/,
    );
  });

  it('refuses a path outside its data dirs, also through a symlink, and an unconfigured dir', async () => {
    const d = dataRoot();
    symlinkSync(d.outside, join(d.raw, 'escape'));
    const dirs = { raw: d.raw, processed: d.processed };
    const out = await parseInput(
      copy,
      { source: join(d.raw, 'escape', 'x'), target: join(d.raw, 'y') },
      dirs,
      'enqueue',
    );
    expect(out.ok).toBe(false);
    const problems = !out.ok ? out.problems : [];
    expect(problems[0]).toContain(`params.source = "${join(d.raw, 'escape', 'x')}" is not allowed`);
    expect(problems[0]).toContain('outside the data dirs');
    // target is in raw, but the field allows processed only
    expect(problems[1]).toContain('params.target');
    const none = await parseInput(
      copy,
      { source: join(d.raw, 'a'), target: join(d.processed, 'b') },
      { raw: d.raw },
      'enqueue',
    );
    expect(!none.ok && none.problems.join('\n')).toContain('the data dir "processed" is not configured');
  });

  it('confines a path field wherever the input holds it, and parses plain inputs without the scope', async () => {
    const d = dataRoot();
    const p = () => dataPath({ dirs: ['raw'], mode: 'read' });
    const outside = join(d.outside, 'x');
    const shapes: [string, z.ZodType, unknown][] = [
      ['optional', z.object({ a: p().optional() }), { a: outside }],
      ['described', z.object({ a: p().describe('a file') }), { a: outside }],
      ['with a default', z.object({ a: p().default(join(d.raw, 'x')) }), { a: outside }],
      ['in an array', z.object({ a: z.array(p()) }), { a: [outside] }],
      ['in a record', z.record(z.string(), p()), { a: outside }],
      ['in a union', z.union([z.number(), z.object({ q: p() })]), { q: outside }],
      ['behind z.lazy', z.lazy(() => z.object({ q: p() })), { q: outside }],
      ['as catchall', z.object({}).catchall(p()), { q: outside }],
      ['under a legacy name', legacyNames(z.object({ a: p() }), { old: 'a' }), { old: outside }],
    ];
    for (const [what, input, params] of shapes) {
      expect(mayDeclarePaths(input), what).toBe(true);
      const out = await parseInput({ input, legacyNames: {} }, params, { raw: d.raw }, 'enqueue');
      expect(!out.ok && out.problems.join('\n'), what).toContain('outside the data dirs');
    }
    // Only schemas of plain types and built-in checks skip the scope; any refinement or transform
    // might read it.
    const plain = z.object({ n: z.number().int().min(1), s: z.string().max(9), e: z.array(z.enum(['x'])) });
    expect(mayDeclarePaths(z.unknown())).toBe(false);
    expect(mayDeclarePaths(plain)).toBe(false);
    expect(mayDeclarePaths(legacyNames(plain, { old: 'n' }))).toBe(false);
    expect(mayDeclarePaths(z.string().refine((s) => s.length > 1))).toBe(true);
    expect(mayDeclarePaths(z.string().transform((s) => s.trim()))).toBe(true);
    const parsed = await parseInput(
      { input: plain, legacyNames: {} },
      { n: 0, s: 'a', e: [] },
      {},
      'enqueue',
    );
    expect(!parsed.ok && parsed.problems[0]).toMatch(/^params\.n = 0 /);
  });

  it('checks the input again when the job runs: a symlink swapped in after enqueue is refused', async () => {
    const d = dataRoot();
    const dirs = { raw: d.raw, processed: d.processed };
    mkdirSync(join(d.processed, 'real'));
    symlinkSync(join(d.processed, 'real'), join(d.processed, 'out'));
    const params = { source: join(d.raw, 'a'), target: join(d.processed, 'out', 'file') };
    expect((await parseInput(copy, params, dirs, 'enqueue')).ok).toBe(true);
    process.env.JOBD_DATA_DIRS = JSON.stringify(dirs);
    await expect(copy.handler(params, ctx())).resolves.toEqual({ wrote: join(d.processed, 'real', 'file') });
    unlinkSync(join(d.processed, 'out'));
    symlinkSync(d.outside, join(d.processed, 'out'));
    await expect(copy.handler(params, ctx())).rejects.toMatchObject({
      name: 'InvalidInputError',
      code: 'JOBD_INVALID_INPUT',
      message: expect.stringContaining('outside the data dirs'),
    });
  });

  it('lets a job write only below the paths its input declares for writing', async () => {
    const d = dataRoot();
    const dirs = { raw: d.raw, processed: d.processed };
    process.env.JOBD_DATA_DIRS = JSON.stringify(dirs);
    const sneaky = defineJobType({
      ...copy,
      input: z.strictObject({ target: dataPath({ mode: 'write' }), other: dataPath({ mode: 'read' }) }),
      handler: async (input, c) => ({ wrote: await c.checkWrite(input.other) }),
    });
    await expect(
      sneaky.handler({ target: join(d.processed, 'a'), other: join(d.processed, 'b') }, ctx()),
    ).rejects.toMatchObject({
      name: 'PathNotAllowedError',
      message: expect.stringContaining('writes only to the paths its input declares for writing'),
    });
  });

  it('fails an attempt whose output does not match the output schema with JOBD_INVALID_OUTPUT', async () => {
    const bad = defineJobType({
      name: 'bad',
      description: 'returns the wrong shape',
      input: z.unknown(),
      output: z.strictObject({ count: z.number() }),
      handler: () => ({ count: 'three' }) as unknown as { count: number },
    });
    await expect(bad.handler({}, ctx())).rejects.toMatchObject({
      name: 'InvalidOutputError',
      code: 'JOBD_INVALID_OUTPUT',
      message: expect.stringContaining(
        'output.count = "three" is not allowed: expected number, received string',
      ),
    });
  });
});

describe("a typed handler's context", () => {
  it('carries ctx.signal unread: a getter is read only when the handler reads the signal', async () => {
    let reads = 0;
    const controller = new AbortController();
    const lazyCtx = (): JobContext => {
      const c = ctx();
      Object.defineProperty(c, 'signal', {
        get: () => (reads++, controller.signal),
        enumerable: true,
        configurable: true,
      });
      return c;
    };
    const quiet = defineJobType({
      name: 'quiet',
      description: 'returns null',
      schemas: (z) => ({ input: z.unknown(), output: z.null() }),
      handler: () => null,
    });
    await expect(quiet.handler({}, lazyCtx())).resolves.toBeNull();
    expect(reads).toBe(0);
    const reader = defineJobType({
      name: 'reader',
      description: 'reads its signal',
      schemas: (z) => ({ input: z.unknown(), output: z.boolean() }),
      handler: (_p, c) => c.signal === controller.signal && c.jobId === 'j1' && 'dataDirs' in c,
    });
    await expect(reader.handler({}, lazyCtx())).resolves.toBe(true);
    expect(reads).toBe(1);
  });
});

describe('the catalog', () => {
  it('lists the built-ins with their queues and JSON Schemas', async () => {
    const catalog = await loadCatalog(builtinJobTypes(DEFAULTS));
    expect(Object.keys(catalog).sort()).toEqual([...BUILTIN_JOB_TYPES].sort());
    expect(catalog.sleep!.queue).toBe('sleep');
    const schemas = jsonSchemas(catalog.sleep!) as { input: { anyOf?: unknown[] }; output: unknown };
    expect(JSON.stringify(schemas.input)).toContain('"ms"');
    expect(schemas.output).toMatchObject({ type: 'object', properties: { sleptMs: { type: 'number' } } });
    expect(jsonSchemas(copy as never).input).toBeDefined();
  });

  it('no built-in module declares a queue, so queueMembership may skip importing them', async () => {
    const types = builtinJobTypes(DEFAULTS);
    const catalog = await loadCatalog(types);
    const membership = await queueMembership(types);
    for (const name of BUILTIN_JOB_TYPES) {
      expect(isOwnBuiltin(types[name]!), name).toBe(true);
      // The catalog imports the module and reads what it declares.
      expect(catalog[name]!.queue, name).toBe(name);
      expect(membership[name], name).toBe(name);
    }
  });

  it("queueMembership reads the queue from a user's module, also under a built-in's name", async () => {
    const typed = fileURLToPath(new URL('../fixtures/jobs/typed.mjs', import.meta.url));
    const types = builtinJobTypes(DEFAULTS);
    const mine = { ...types.noop!, handler: typed };
    expect(isOwnBuiltin(mine)).toBe(false);
    const membership = await queueMembership({ noop: mine, sleep: { ...types.sleep!, queue: 'slow' } });
    expect(membership).toEqual({ noop: 'files', sleep: 'slow' });
  });

  it('checkInputs refuses a bad job before anything is written and names each problem', async () => {
    const types = builtinJobTypes(DEFAULTS);
    await expect(
      checkInputs(
        [
          { type: 'sleep', params: { ms: 5 }, where: 'line 1: ' },
          { type: 'sleep', params: { ms: -1 }, where: 'line 2: ' },
          { type: 'fail', params: { mesage: 'typo' }, where: 'line 3: ' },
          { type: 'unknown-type', params: 42 },
        ],
        types,
        {},
      ),
    ).rejects.toThrow(ValidationError);
    const err = await checkInputs([{ type: 'sleep', params: { ms: 'x' } }], types, {}).catch((e: Error) => e);
    expect((err as Error).message).toContain(
      'job type "sleep": params.ms = "x" is not allowed: must be a number of milliseconds',
    );
    const lines = await checkInputs(
      [
        { type: 'sleep', params: { ms: -1 }, where: 'line 2: ' },
        { type: 'fail', params: { mesage: 'typo' }, where: 'line 3: ' },
      ],
      types,
      {},
    ).catch((e: Error) => e.message.split('\n'));
    expect(lines).toEqual([
      'nothing was enqueued:',
      'line 2: job type "sleep": params.ms = -1 is not allowed: must be a number of milliseconds >= 0',
      'line 3: job type "fail": params.mesage = "typo" is not allowed: unknown field',
    ]);
  });
});
