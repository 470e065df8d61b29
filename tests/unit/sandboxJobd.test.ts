/**
 * Handlers import jobd's helpers as the README shows (`import { DoNotRetryError } from 'jobd'`),
 * wherever they live: here in a fresh folder under the OS temp dir, outside the checkout, where
 * normal resolution cannot find jobd. `jobd` resolves to this checkout's dist/index.js, so this
 * needs `npm run build` (the end-to-end test runs bin/jobd, which needs it anyway).
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { isDoNotRetry } from '../../src/errors.js';
import { openTestDb } from '../helpers/db.js';
import { killAllDaemons, startDaemonProcess, writeDaemonSettings } from '../helpers/daemonProcess.js';
import { completed, failed, noHooks, request, sandbox, useSandboxes } from './sandboxHelpers.js';

useSandboxes();

let home: string;
const at = (rel: string): string => join(home, rel);

function write(rel: string, text: string): string {
  const file = at(rel);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
  return file;
}

beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'jobd-handlers-elsewhere-'));
  const body = (how: string): string => `
export default async function (params) {
  if (params.fail) throw new DoNotRetryError('${how} says no');
  return { pid: process.pid, isClass: typeof DoNotRetryError === 'function' };
}
`;
  write('esm/handler.mjs', `import { DoNotRetryError } from 'jobd';\n${body('esm')}`);
  write(
    'cjs/handler.cjs',
    `const { DoNotRetryError } = require('jobd');
module.exports = async function (params) {
  if (params.fail) throw new DoNotRetryError('cjs says no');
  return { pid: process.pid };
};
`,
  );
  write('nested/lib.mjs', "export { DoNotRetryError } from 'jobd';\n");
  write('nested/handler.mjs', `import { DoNotRetryError } from './lib.mjs';\n${body('nested')}`);
  write(
    'lazy/handler.mjs',
    `export default async function () {
  const { DoNotRetryError } = await import('jobd');
  throw new DoNotRetryError('lazy says no');
}
`,
  );
  // A handler with its own node_modules/jobd: that copy wins over jobd's fallback.
  write(
    'own/node_modules/jobd/package.json',
    JSON.stringify({ name: 'jobd', version: '0.0.0-own', main: 'index.js' }),
  );
  write(
    'own/node_modules/jobd/index.js',
    `class DoNotRetryError extends Error {
  constructor(m) { super(m); this.name = 'DoNotRetryError'; this.code = 'OWN_COPY'; }
}
exports.DoNotRetryError = DoNotRetryError;
`,
  );
  write('own/handler.mjs', `import { DoNotRetryError } from 'jobd';\n${body('own')}`);
  // A handler folder whose node_modules/jobd is a link to this package, and a module there that
  // cannot load (see sandboxOwnJobd.test.ts).
  mkdirSync(at('linked/node_modules'), { recursive: true });
  symlinkSync(resolve(import.meta.dirname, '../..'), at('linked/node_modules/jobd'), 'dir');
  write(
    'linked/missing.mjs',
    `import { DoNotRetryError } from 'jobd';
import missing from 'no-such-package-anywhere';
export default async () => missing(DoNotRetryError);
`,
  );
  write(
    'own/handler.cjs',
    `const { DoNotRetryError } = require('jobd');
module.exports = async () => { throw new DoNotRetryError('own cjs'); };
`,
  );
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe.each(['pooled', 'isolated'] as const)(
  "a handler outside the checkout imports 'jobd' (%s)",
  (mode) => {
    it('ES module, CommonJS, and through a module of its own: DoNotRetryError fails at once with JOBD_DO_NOT_RETRY', async () => {
      const s = sandbox();
      for (const [file, says] of [
        ['esm/handler.mjs', 'esm says no'],
        ['cjs/handler.cjs', 'cjs says no'],
        ['nested/handler.mjs', 'nested says no'],
      ] as const) {
        const o = failed(await s.run(request(at(file), { mode, params: { fail: true } }), noHooks));
        expect(o.reason).toBe('error');
        expect(o.error).toMatchObject({ name: 'DoNotRetryError', code: 'JOBD_DO_NOT_RETRY', message: says });
        expect(isDoNotRetry(o.error)).toBe(true);
      }
    });

    it("a handler's own node_modules/jobd wins", async () => {
      const s = sandbox();
      for (const file of ['own/handler.mjs', 'own/handler.cjs']) {
        const o = failed(await s.run(request(at(file), { mode, params: { fail: true } }), noHooks));
        expect(o.error).toMatchObject({ name: 'DoNotRetryError', code: 'OWN_COPY' });
      }
    });

    it("an import('jobd') in the handler's body fails that attempt only; later attempts resolve it", async () => {
      const s = sandbox();
      const first = failed(await s.run(request(at('lazy/handler.mjs'), { mode }), noHooks));
      expect(first.error.message).toContain("Cannot find package 'jobd'");
      expect(isDoNotRetry(first.error)).toBe(false);
      const second = failed(await s.run(request(at('lazy/handler.mjs'), { mode, attempt: 2 }), noHooks));
      expect(second.error).toMatchObject({ code: 'JOBD_DO_NOT_RETRY', message: 'lazy says no' });
    });
  },
);

it('once a handler needs the hook, pooled children with it are reused for it and for other handlers', async () => {
  const s = sandbox({ maxChildren: 2 });
  const a = completed(await s.run(request(at('esm/handler.mjs')), noHooks)).output as {
    pid: number;
    isClass: boolean;
  };
  expect(a.isClass).toBe(true);
  const b = completed(await s.run(request(at('esm/handler.mjs')), noHooks)).output as { pid: number };
  const c = completed(await s.run(request(at('cjs/handler.cjs')), noHooks)).output as { pid: number };
  expect(b.pid).toBe(a.pid);
  expect(c.pid).toBe(a.pid);
});

describe('end to end: a real daemon', () => {
  afterEach(async () => {
    await killAllDaemons();
  });

  it("runs the README's handler from outside the checkout: the job fails at once, after one attempt", async () => {
    const t = await openTestDb('sandbox_jobd');
    const client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    try {
      const s = writeDaemonSettings({
        mongoUri: t.uri,
        database: t.dbName,
        jobTypes: {
          readme: { handler: at('esm/handler.mjs'), mode: 'pooled', maxAttempts: 5 },
          readmeCjs: { handler: at('cjs/handler.cjs'), mode: 'isolated', maxAttempts: 5 },
          linkedMissing: { handler: at('linked/missing.mjs'), mode: 'isolated', maxAttempts: 5 },
        },
      });
      await startDaemonProcess(s);
      for (const type of ['readme', 'readmeCjs']) {
        const { job } = await client.enqueue(type, { fail: true });
        const done = await client.waitFor(job._id, { timeoutMs: 60_000 });
        expect(done).toMatchObject({
          state: 'failed',
          attempts: 1,
          lastError: { name: 'DoNotRetryError', code: 'JOBD_DO_NOT_RETRY' },
        });
      }
      const { job } = await client.enqueue('readme', {});
      const ok = await client.waitFor(job._id, { timeoutMs: 60_000 });
      expect(ok).toMatchObject({ state: 'completed', attempts: 1, result: { isClass: true } });
      // Beside its own link to jobd, a handler that cannot load fails at once: no crash, no retries.
      // (Isolated: a fresh child, which loads it through require(), not one that ran 'readme'.)
      const linked = await client.enqueue('linkedMissing', {});
      const notLoaded = await client.waitFor(linked.job._id, { timeoutMs: 60_000 });
      expect(notLoaded).toMatchObject({
        state: 'failed',
        attempts: 1,
        lastError: { name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD' },
      });
    } finally {
      await client.close();
      await t.close();
    }
  });
});
