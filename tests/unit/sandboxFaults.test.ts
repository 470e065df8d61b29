/**
 * Handlers that fail in ways of their own: a promise that never settles, a module that cannot be
 * loaded. Real child processes; the broken modules are written to a temp folder at test time.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isDoNotRetry } from '../../src/errors.js';
import { completed, failed, noHooks, request, sandbox, useSandboxes } from './sandboxHelpers.js';

useSandboxes();

let mods: string;
beforeAll(() => {
  mods = mkdtempSync(join(tmpdir(), 'jobd-broken-handlers-'));
});
afterAll(() => rmSync(mods, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = join(mods, name);
  writeFileSync(file, text);
  return file;
}

describe.each(['pooled', 'isolated'] as const)('a handler whose promise never settles (%s)', (mode) => {
  it('fails with HandlerNeverSettledError as soon as nothing is left to run, not at the timeout', async () => {
    const s = sandbox();
    const o = failed(await s.run(request('neverSettles.ts', { mode, timeoutMs: 10 * 60_000 }), noHooks));
    expect(o.reason).toBe('error');
    expect(o.error).toMatchObject({ name: 'HandlerNeverSettledError', code: 'JOBD_HANDLER_NEVER_SETTLED' });
    expect(o.error.message).toContain("the handler's promise never settled and nothing was left to run");
    expect(o.logTail).toContain('waiting forever');
    expect(isDoNotRetry(o.error)).toBe(false);
    // Nothing of that job is left running: a pooled child takes the next job.
    const next = completed(await s.run(request('ok.ts', { mode }), noHooks));
    expect(next.output).toMatchObject({ echo: {} });
  });
});

it('a pooled handler that never settles but keeps the event loop busy is ended by the timeout', async () => {
  const o = failed(await sandbox().run(request('hangs.ts', { timeoutMs: 1500, killGraceMs: 200 }), noHooks));
  expect(o).toMatchObject({ reason: 'timeout', error: { code: 'JOBD_TIMEOUT' } });
});

describe('a handler module that cannot be loaded', () => {
  it('fails the attempt with HandlerLoadError naming the module, not retried, in both modes', async () => {
    const cases: Array<[string, string]> = [
      [write('syntax.mjs', 'export default async function ( {\n'), ''],
      [write('missingFile.mjs', "import x from './nope.mjs';\nexport default () => x;\n"), 'nope.mjs'],
      [
        write('missingPackage.cjs', "module.exports = require('no-such-package-for-jobd');\n"),
        'no-such-package-for-jobd',
      ],
      [write('lib.mjs', 'export const a = 1;\n'), ''],
      [write('missingExport.mjs', "import { b } from './lib.mjs';\nexport default () => b;\n"), "'b'"],
      [join(mods, 'doesNotExist.mjs'), ''],
    ];
    cases.splice(3, 1); // lib.mjs is only imported
    const s = sandbox();
    for (const mode of ['pooled', 'isolated'] as const) {
      for (const [file, mentions] of cases) {
        const o = failed(await s.run(request(file, { mode }), noHooks));
        expect(o.reason).toBe('error');
        expect(o.error).toMatchObject({ name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD' });
        expect(o.error.message).toContain(`handler module ${file} cannot be loaded`);
        expect(o.error.message).toContain(mentions);
        expect(isDoNotRetry(o.error)).toBe(true);
      }
    }
  });

  it('an exception thrown by the module while it runs stays what it is, and is retried', async () => {
    const file = write('throwsAtLoad.mjs', "throw new RangeError('boom while loading');\n");
    const o = failed(await sandbox().run(request(file), noHooks));
    expect(o.error).toMatchObject({ name: 'RangeError', message: 'boom while loading' });
    expect(isDoNotRetry(o.error)).toBe(false);
  });

  it('a pooled child that failed to load a module is replaced, so a fixed file loads on the next job', async () => {
    const s = sandbox();
    const file = write('fixedLater.mjs', 'export default async function ( {\n');
    failed(await s.run(request(file), noHooks));
    write('fixedLater.mjs', "export default async function () { return 'fixed'; }\n");
    expect(completed(await s.run(request(file), noHooks)).output).toBe('fixed');
  });
});
