/**
 * The abort a run listens to, from RunHooks: the daemon passes its LazyAbort (`abort`), which is
 * listened to without an AbortSignal; a library caller may pass an AbortSignal (`signal`).
 *
 * Why not an AbortSignal per job: on Node 20 each one is made by setting the prototype of a fresh
 * EventTarget and then adding three symbol properties, and V8 gives each such object hidden classes of
 * its own (three maps and their descriptor arrays, never shared). At thousands of jobs a second that was
 * a large part of what the daemon's old generation collected.
 */
import type { AbortSource, RunHooks } from './types.js';

export function abortOf(hooks: RunHooks): AbortSource | undefined {
  if (hooks.abort) return hooks.abort;
  const s = hooks.signal;
  if (!s) return undefined;
  return {
    get aborted() {
      return s.aborted;
    },
    get reason() {
      return s.reason as unknown;
    },
    onAbort(fn) {
      s.addEventListener('abort', fn, { once: true });
      return () => s.removeEventListener('abort', fn);
    },
  };
}
