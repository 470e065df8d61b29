/**
 * Lifecycle hooks in the sandbox child: a job type's module may export onStart(ctx),
 * onSuccess(result, ctx), onFailure(error, ctx) (after the last attempt only) and
 * onRetry(error, attempt, delayMs, ctx). They run beside the handler, one at a time, each bounded by
 * the job message's hooks.timeoutMs. A hook that throws or does not settle in time is reported back
 * (DoneMessage.hookErrors) and changes nothing else: the attempt's outcome is the handler's.
 *
 * Whether a failed attempt is retried, and after what delay, is decided here with the daemon's own
 * pure decision (retryPolicy.ts) on the same inputs the daemon uses: the attempt, maxAttempts, the
 * retry policy and the random draw the daemon made before sending the job. So onRetry's delayMs is
 * the delay the daemon writes, and onFailure runs exactly when the job fails for good.
 */
import type { HookName, JobContext, SerializedError } from '../types.js';
import type { HookFailure, HooksRequest } from './protocol.js';

type HookFn = (...args: unknown[]) => unknown;
export type Hooks = Partial<Record<HookName, HookFn>>;

const HOOK_NAMES: readonly HookName[] = ['onStart', 'onSuccess', 'onFailure', 'onRetry'];

/** The hooks a loaded module exports (named exports, or properties of its default export object). */
export function pickHooks(mod: Record<string, unknown>): Hooks {
  const dflt = mod.default as Record<string, unknown> | undefined;
  const hooks: Hooks = {};
  for (const name of HOOK_NAMES) {
    const fn = mod[name] ?? (dflt && typeof dflt === 'object' ? dflt[name] : undefined);
    if (typeof fn === 'function') hooks[name] = fn as HookFn;
  }
  return hooks;
}

function hookTimeoutError(hook: HookName, ms: number): SerializedError {
  return {
    name: 'HookTimeoutError',
    code: 'JOBD_HOOK_TIMEOUT',
    message: `${hook} did not finish within ${ms} ms (worker.hookTimeoutMs); the job's outcome is unchanged`,
  };
}

export interface HookRunner {
  /** Run one hook if the module has it; failures are collected, never thrown. */
  run(hook: HookName, args: unknown[]): Promise<void>;
  /** Run the hook that follows a settled attempt: onSuccess, or onRetry / onFailure per the retry decision. */
  after(outcome: { ok: true; output: unknown } | { ok: false; error: SerializedError }): Promise<void>;
  readonly failures: HookFailure[];
  /** A hook was still running at its deadline: this process must not be reused. */
  readonly abandoned: boolean;
}

export function hookRunner(
  hooks: Hooks,
  req: HooksRequest,
  ctx: JobContext,
  serialize: (err: unknown) => Promise<SerializedError>,
  onAfter: () => void,
): HookRunner {
  const failures: HookFailure[] = [];
  let abandoned = false;
  const run = async (hook: HookName, args: unknown[]): Promise<void> => {
    const fn = hooks[hook];
    if (!fn) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = Symbol('timeout');
    try {
      const r = await Promise.race([
        Promise.resolve().then(() => fn(...args, ctx)),
        new Promise<typeof timedOut>(
          (resolve) => (timer = setTimeout(() => resolve(timedOut), req.timeoutMs)),
        ),
      ]);
      if (r === timedOut) {
        abandoned = true;
        failures.push({ hook, error: hookTimeoutError(hook, req.timeoutMs) });
      }
    } catch (err) {
      failures.push({ hook, error: await serialize(err) });
    } finally {
      clearTimeout(timer);
    }
  };
  const after: HookRunner['after'] = async (outcome) => {
    const wants = outcome.ok ? hooks.onSuccess : hooks.onRetry || hooks.onFailure;
    if (!wants) return;
    onAfter();
    if (outcome.ok) return run('onSuccess', [outcome.output]);
    const { decideRetry } = await import('../retryPolicy.js');
    const d = decideRetry({
      attempt: ctx.attempt,
      maxAttempts: req.maxAttempts,
      error: outcome.error,
      policy: req.retry,
      random: req.random,
    });
    if (d.retry) return run('onRetry', [outcome.error, ctx.attempt, d.delayMs]);
    return run('onFailure', [outcome.error]);
  };
  return {
    run,
    after,
    failures,
    get abandoned() {
      return abandoned;
    },
  };
}
