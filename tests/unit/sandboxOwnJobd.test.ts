/**
 * A handler folder with its own node_modules/jobd: a link to this package, or a copy of it (its
 * package.json and dist/, its dependencies reached through a linked node_modules). The sandbox is
 * the compiled one (dist/), as jobd runs it: its children load handlers through require(), and with
 * the link, jobd's files in the handler's module graph are the very files the child uses itself.
 * A handler module that fails to load must then fail the attempt with HandlerLoadError (it used to
 * leave jobd's errors module unusable in the child: ERR_INTERNAL_ASSERTION, and no outcome).
 * Needs `npm run build`.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { completed, failed, noHooks, request, useCompiledSandboxes, useSandboxes } from './sandboxHelpers.js';

const ROOT = resolve(import.meta.dirname, '../..');

useSandboxes();

let home: string;
const sandbox = useCompiledSandboxes();

function write(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

/** A folder of handlers beside `node_modules/jobd`, made by `install`. */
function handlerFolder(name: string, install: (jobdDir: string) => void): string {
  const dir = join(home, name);
  const jobdDir = join(dir, 'node_modules', 'jobd');
  mkdirSync(dirname(jobdDir), { recursive: true });
  install(jobdDir);
  write(
    join(dir, 'works.mjs'),
    `import { DoNotRetryError } from 'jobd';
export default async function (params) {
  if (params.fail) throw new DoNotRetryError('own jobd says no');
  return { isClass: typeof DoNotRetryError === 'function' };
}
`,
  );
  // jobd links first, then the missing package fails the whole graph.
  write(
    join(dir, 'missingImport.mjs'),
    `import { DoNotRetryError } from 'jobd';
import missing from 'no-such-package-anywhere';
export default async function () {
  return missing(DoNotRetryError);
}
`,
  );
  return dir;
}

const layouts: Record<string, string> = {};

beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'jobd-own-jobd-'));
  layouts.link = handlerFolder('linked', (jobdDir) => symlinkSync(ROOT, jobdDir, 'dir'));
  layouts.copy = handlerFolder('copied', (jobdDir) => {
    mkdirSync(jobdDir);
    cpSync(join(ROOT, 'package.json'), join(jobdDir, 'package.json'));
    cpSync(join(ROOT, 'dist'), join(jobdDir, 'dist'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(jobdDir, 'node_modules'), 'dir');
  });
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe.each([
  ['link', 'pooled'],
  ['link', 'isolated'],
  ['copy', 'pooled'],
  ['copy', 'isolated'],
] as const)('a handler folder whose node_modules/jobd is a %s of the package (%s)', (layout, mode) => {
  it('a module that fails to load fails the attempt with HandlerLoadError naming what is missing', async () => {
    const s = sandbox();
    const file = join(layouts[layout]!, 'missingImport.mjs');
    const o = failed(await s.run(request(file, { mode }), noHooks));
    expect(o.reason, o.logTail).toBe('error');
    expect(o.error).toMatchObject({ name: 'HandlerLoadError', code: 'JOBD_HANDLER_LOAD' });
    expect(o.error.message).toContain(file);
    expect(o.error.message).toContain("Cannot find package 'no-such-package-anywhere'");
    expect(o.logTail).not.toContain('ERR_INTERNAL_ASSERTION');
  });

  it("its own jobd's helpers work: DoNotRetryError is recognised, a result arrives", async () => {
    const s = sandbox();
    const file = join(layouts[layout]!, 'works.mjs');
    const no = failed(await s.run(request(file, { mode, params: { fail: true } }), noHooks));
    expect(no.error).toMatchObject({
      name: 'DoNotRetryError',
      code: 'JOBD_DO_NOT_RETRY',
      message: 'own jobd says no',
    });
    const ok = completed(await s.run(request(file, { mode }), noHooks));
    expect(ok.output).toEqual({ isClass: true });
  });
});

it('a pooled child replaces one whose handler failed to load, and keeps serving', async () => {
  const s = sandbox();
  const dir = layouts.link!;
  const bad = failed(await s.run(request(join(dir, 'missingImport.mjs')), noHooks));
  expect(bad.error.code).toBe('JOBD_HANDLER_LOAD');
  const ok = completed(await s.run(request(join(dir, 'works.mjs')), noHooks));
  expect(ok.output).toEqual({ isClass: true });
});
