/**
 * How a handler reaches jobd's helpers (`import { DoNotRetryError } from 'jobd'`) wherever it lives,
 * although jobd is not installed where the handler is. In a sandbox child, after normal resolution
 * fails (so a handler's own node_modules/jobd always wins), `jobd` and `jobd/...` resolve as if
 * imported from inside jobd's own package: Node's package self-reference, which follows jobd's
 * package.json "exports" (`jobd` is dist/index.js).
 *
 * - require('jobd') (CommonJS handlers): a fallback around Module._resolveFilename, installed in
 *   every child. It costs nothing until a resolution fails.
 * - import 'jobd' (ES modules): a resolve hook, registered with module.register(). On Node 20 that
 *   starts the module-hooks thread, which would add tens of milliseconds of CPU to every child start,
 *   so children start without it. A handler that needs it fails to load with "Cannot find package
 *   'jobd'" before any of its code runs (ES modules are linked first); the child reports that, and
 *   the sandbox reruns the attempt in a child with the hook and uses such children for that handler
 *   from then on. A failed load is cached by Node's module loader, hence the fresh child. An
 *   import('jobd') inside the handler's function fails only when it runs: that attempt fails (and
 *   is retried as usual), and the handler's later attempts get the hook.
 * Neither loads jobd itself: that happens only when a handler imports it.
 */
import { pathToFileURL } from 'node:url';

function isJobd(specifier: string): boolean {
  return specifier === 'jobd' || specifier.startsWith('jobd/');
}

type ResolveFilename = (request: string, parent: unknown, isMain: boolean, options?: unknown) => string;

export function installRequireFallback(): void {
  // Module._resolveFilename is the one place CommonJS resolution goes through (tsx wraps it too).
  // `module.constructor` is that Module class: requiring 'node:module' would load four more of Node's
  // own modules (~0.4 CPU-ms) in every child start.
  const M = module.constructor as unknown as { _resolveFilename: ResolveFilename };
  const original = M._resolveFilename;
  M._resolveFilename = function (this: unknown, request, parent, isMain, options) {
    try {
      return original.call(this, request, parent, isMain, options);
    } catch (err) {
      if (!isJobd(request) || (err as { code?: unknown }).code !== 'MODULE_NOT_FOUND') throw err;
      // This module is inside jobd's package: resolving from it is a self-reference.
      return original.call(this, request, module, isMain, options);
    }
  };
}

export function registerImportHook(): void {
  const self = pathToFileURL(__filename);
  // From sources (tsx) this file is .cts and the hook .mts; compiled, .cjs and .mjs.
  const hook = __filename.endsWith('.cts') ? '../jobdResolveHook.mts' : '../jobdResolveHook.mjs';
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- only children with the hook need it
  const { register } = require('node:module') as typeof import('node:module');
  register(hook, { parentURL: self, data: { parentURL: self.href } });
}

/** The load failed because `jobd` could not be resolved for an ES module: the hook would help. */
export function isJobdImportFailure(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return (
    !!e &&
    e.code === 'ERR_MODULE_NOT_FOUND' &&
    typeof e.message === 'string' &&
    e.message.startsWith("Cannot find package 'jobd' ")
  );
}
