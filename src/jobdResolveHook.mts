/**
 * Module resolve hook (node:module register()) that lets a handler `import 'jobd'` wherever it lives.
 * Registered by the sandbox only in children whose handler needs it (src/sandbox/jobdResolve.cts),
 * and by the job-type catalog when a module it reads for its schemas imports jobd; it runs on Node's
 * module-hooks thread.
 *
 * Normal resolution goes first, so a handler's own node_modules/jobd wins. Only when that fails is
 * the specifier resolved again as if imported from inside jobd's own package: Node's package
 * self-reference, which follows jobd's package.json "exports" (`jobd` is dist/index.js).
 */
import type { InitializeHook, ResolveHook } from 'node:module';

let insideJobd = '';

export const initialize: InitializeHook<{ parentURL: string }> = (data) => {
  insideJobd = data.parentURL;
};

export const resolve: ResolveHook = async (specifier, context, nextResolve) => {
  try {
    return await nextResolve(specifier, context);
  } catch (err) {
    const isJobd = specifier === 'jobd' || specifier.startsWith('jobd/');
    if (!isJobd || (err as { code?: unknown }).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    return nextResolve(specifier, { ...context, parentURL: insideJobd });
  }
};
