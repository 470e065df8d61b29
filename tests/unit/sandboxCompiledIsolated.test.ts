/**
 * Isolated children of the compiled sandbox (dist/), as jobd runs them for JavaScript handlers: they
 * require() the handler, and load jobd's error classes only when a failure needs them (childEntry.cts
 * errors()). The other sandbox tests run from sources, where children import() handlers through tsx
 * and load the error classes first. Needs `npm run build`.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sandbox } from '../../src/sandbox/index.js';
import { isDoNotRetry } from '../../src/errors.js';
import { completed, failed, noHooks, request, useCompiledSandboxes, useSandboxes } from './sandboxHelpers.js';

const ROOT = resolve(import.meta.dirname, '../..');

useSandboxes();

let mods: string;
const sandbox = useCompiledSandboxes();

beforeAll(() => {
  mods = mkdtempSync(join(tmpdir(), 'jobd-compiled-isolated-'));
});
afterAll(() => rmSync(mods, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(mods, name);
  writeFileSync(file, text);
  return file;
}

const run = (s: Sandbox, file: string, params: unknown = {}) =>
  s.run(request(file, { mode: 'isolated', params }), noHooks);

it('the compiled child entry is one file: it requires none of its CommonJS parts at start-up', () => {
  // scripts/bundleChild.mjs: every file an isolated child loads costs CPU at each job's start.
  const entry = readFileSync(join(ROOT, 'dist/sandbox/childEntry.cjs'), 'utf8');
  expect(entry).toContain('function installRequireFallback');
  expect(entry).toContain('function encodeOutput');
  expect(entry).not.toMatch(/require\(["']\.\/[\w.]+\.cjs["']\)/);
});

it("a child whose handler never reads ctx.signal makes no AbortController; one that reads it gets a live signal", async () => {
  // childEntry.cts JobAbort: the first AbortController loads Node's abort_controller module.
  const loaded = "process.moduleLoadList.includes('NativeModule internal/abort_controller')";
  const blind = write('blind.cjs', `module.exports = () => ({ loaded: ${loaded} })\n`);
  expect(completed(await run(sandbox(), blind)).output).toStrictEqual({ loaded: false });
  const reads = write(
    'reads.cjs',
    `module.exports = (p, ctx) => ({ signal: ctx.signal instanceof AbortSignal, same: ctx.signal === ctx.signal, aborted: ctx.signal.aborted, loaded: ${loaded} })\n`,
  );
  expect(completed(await run(sandbox(), reads)).output).toStrictEqual({
    signal: true,
    same: true,
    aborted: false,
    loaded: true,
  });
});

describe.each(['mjs', 'cjs'] as const)('an isolated child of the compiled sandbox (%s handler)', (ext) => {
  const module = (body: string): string =>
    ext === 'mjs' ? `export default ${body}\n` : `module.exports = ${body}\n`;

  it('completes a job', async () => {
    const file = write(`ok.${ext}`, module('(params) => ({ echo: params, pid: process.pid })'));
    const o = completed(await run(sandbox(), file, { n: 1 }));
    expect(o.output).toMatchObject({ echo: { n: 1 } });
  });

  it('reports a thrown error with its name, code and details', async () => {
    const file = write(
      `throws.${ext}`,
      module(
        `() => { const e = new Error('no luck'); e.name = 'DoNotRetryError'; e.code = 'JOBD_DO_NOT_RETRY'; e.details = [{ at: 'x' }]; throw e; }`,
      ),
    );
    const o = failed(await run(sandbox(), file));
    expect(o.error).toMatchObject({
      name: 'DoNotRetryError',
      code: 'JOBD_DO_NOT_RETRY',
      message: 'no luck',
      details: [{ at: 'x' }],
    });
    expect(isDoNotRetry(o.error)).toBe(true);
  });

  it('fails a module that cannot load with HandlerLoadError, not retried', async () => {
    const file = write(`broken.${ext}`, module('() => { return ;;; )'));
    const o = failed(await run(sandbox(), file));
    expect(o.error).toMatchObject({ name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD' });
    expect(o.error.message).toContain(file);
    expect(isDoNotRetry(o.error)).toBe(true);
  });

  it('fails a module without a handler export with HandlerLoadError', async () => {
    const file = write(`noExport.${ext}`, module('42'));
    const o = failed(await run(sandbox(), file));
    expect(o.error).toMatchObject({ name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD' });
    expect(o.error.message).toContain('has no default export function');
  });

  it('fails a handler whose promise never settles with HandlerNeverSettledError', async () => {
    const file = write(`never.${ext}`, module('() => new Promise(() => {})'));
    const o = failed(await run(sandbox(), file));
    expect(o.reason).toBe('error');
    expect(o.error).toMatchObject({ name: 'HandlerNeverSettledError', code: 'JOBD_HANDLER_NEVER_SETTLED' });
  });

  it('refuses an output that cannot travel with UnserializableOutputError', async () => {
    const file = write(`fn.${ext}`, module('() => ({ f: () => 1 })'));
    const o = failed(await run(sandbox(), file));
    expect(o.error).toMatchObject({ name: 'UnserializableOutputError', code: 'JOBD_UNSERIALIZABLE_OUTPUT' });
    expect(o.error.message).toContain('output.f is a function');
  });
});
