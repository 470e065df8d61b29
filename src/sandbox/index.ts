export { createSandbox } from './sandbox.js';
export type { PrestartSpec } from './prestart.js';
export type {
  FailureReason,
  AbortSource,
  RunHooks,
  RunOutcome,
  RunRequest,
  Sandbox,
  SandboxLogger,
  SandboxOptions,
  SandboxStats,
} from './types.js';
