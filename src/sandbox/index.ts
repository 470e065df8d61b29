export { createSandbox } from './sandbox.js';
export type {
  FailureReason,
  RunHooks,
  RunOutcome,
  RunRequest,
  Sandbox,
  SandboxLogger,
  SandboxOptions,
  SandboxStats,
} from './types.js';
