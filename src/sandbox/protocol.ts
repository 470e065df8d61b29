/**
 * Messages between the daemon and a sandbox child over the IPC channel ('advanced' serialization).
 * Type-only: the child entry imports nothing at runtime from here, which keeps its startup lean.
 */
import type {
  ChildFailurePolicy,
  ChildInfo,
  HookName,
  ResourceAllocation,
  RetryPolicy,
  SerializedError,
  SpawnSpec,
} from '../types.js';

/** What a job knows of its family: its dependencies' results, and (a resumed parent) its children. */
export interface JobFamily {
  /** How many times the job waited for children before (part of its children's spawn keys). */
  resumes: number;
  dependencies?: Record<string, unknown>;
  children?: ChildInfo[];
}

/** A child a handler spawned: its id and spawn key are fixed by the parent's id, resumes and key. */
export interface SpawnedChild extends SpawnSpec {
  id: string;
  key: string;
  spawnKey: string;
  /** The ids of the siblings its dependsOn keys name. */
  dependsOnIds?: string[];
}

export interface JobMessage {
  t: 'job';
  jobId: string;
  type: string;
  attempt: number;
  handler: string;
  params: unknown;
  logFile: string;
  /** The largest encoded output the child may send (see DoneMessage.output). */
  maxOutputBytes: number;
  env?: Record<string, string>;
  cwd?: string;
  family?: JobFamily;
  /** ctx.allocation: the resources given to the job (its type declares needs). */
  allocation?: ResourceAllocation;
  /** Present when lifecycle hooks may run (childHooks.cts). */
  hooks?: HooksRequest;
  /**
   * Present when the daemon parsed a typed job's input (`params` is the parsed input) and validates its
   * output: the paths the input declared, resolved (defineJobType's DAEMON_CHECKS).
   */
  checks?: { paths: unknown[] };
}

/** What the child needs to run a job's lifecycle hooks and to decide, as the daemon does, about a retry. */
export interface HooksRequest {
  /** Bound of each hook, ms. */
  timeoutMs: number;
  /** The job's effective maxAttempts and its type's retry policy. */
  maxAttempts: number;
  retry: RetryPolicy;
  /** The random draw the daemon uses for this attempt's retry delay. */
  random: number;
  /**
   * Run only this hook, not the handler: the attempt's child was killed (timeout, crash, memory), so
   * the daemon decided and a fresh child runs the hook that follows.
   */
  only?: { hook: 'onFailure' | 'onRetry'; error: SerializedError; delayMs?: number };
}

export interface HookFailure {
  hook: HookName;
  error: SerializedError;
}

/** Ask an idle pooled child to exit on its own. */
export interface RetireMessage {
  t: 'retire';
}

/**
 * Jobs for a pooled child, run one after another in this order after those it holds already. Jobs
 * handed over in the same turn of the daemon's event loop travel in one message.
 */
export interface JobsMessage {
  t: 'jobs';
  jobs: JobMessage[];
}

/** Take a job the pooled child holds out of its queue, if it has not started; answered by 'dropped'. */
export interface DropMessage {
  t: 'drop';
  jobId: string;
}

export type ParentMessage = JobMessage | JobsMessage | DropMessage | RetireMessage;

/** CPU time and memory the child measured about itself. */
export interface SelfUsage {
  /** Cumulative user+system CPU of the child process, ms. */
  cpuMs: number;
  /** Current RSS, bytes. */
  rssBytes: number;
  /** Peak RSS over the process lifetime (getrusage maxrss), bytes. */
  maxRssBytes: number;
}

export interface ReadyMessage {
  t: 'ready';
  usage: SelfUsage;
}

export interface ProgressMessage {
  t: 'progress';
  /** The job reporting (pooled children hold several). */
  jobId?: string;
  percent: number;
  message?: string;
}

export interface DoneMessage {
  t: 'done';
  /** The job it ends (pooled children hold several). */
  jobId?: string;
  ok: boolean;
  /** Pooled: how long the job took in the child, from its start to its result, ms. */
  runMs?: number;
  /**
   * What the handler returned, already encoded by the child with v8.serialize (structured clone):
   * the child checks and measures it before anything is sent, so a value that cannot travel, or
   * one too large, becomes an error of the attempt instead of a failure of the channel.
   */
  output?: Uint8Array;
  /**
   * Isolated children: the output as JSON text instead, when JSON carries it exactly (frames.cts).
   * Neither this nor `output`: the handler returned undefined.
   */
  outputJson?: string;
  error?: SerializedError;
  /**
   * `jobd` could not be imported without the resolve hook: while loading the handler's modules
   * ('load': nothing of the handler ran), or by an import() in the handler's code ('run').
   */
  jobdUnresolved?: 'load' | 'run';
  usage: SelfUsage;
  /** An unhandled rejection happened during the job: the child must not be reused. */
  taint?: SerializedError;
  /** Children spawned by the handler (ok only). */
  spawned?: SpawnedChild[];
  /** The handler returned ctx.waitForChildren(): the job waits for its children. */
  wait?: ChildFailurePolicy;
  /** Hooks that threw or timed out (the outcome above is the handler's regardless). */
  hookErrors?: HookFailure[];
  /** A hook was abandoned at its deadline and may still run: the child must not be reused. */
  hookAbandoned?: boolean;
}

/** The handler settled and a hook follows: the daemon's job timeout gives way to the hook's bound. */
export interface HooksMessage {
  t: 'hooks';
  jobId?: string;
  budgetMs: number;
}

/**
 * The outcomes of the jobs a pooled child finished since its last report, in the order they ran:
 * sent when its queue runs empty, at a small bound (childEntry.cts), or on the next turn of its event loop.
 */
export interface ResultsMessage {
  t: 'results';
  done: DoneMessage[];
}

/** The answer to 'drop': true when the job was taken out before it started (it will not run). */
export interface DroppedMessage {
  t: 'dropped';
  jobId: string;
  ok: boolean;
}

/** Something went wrong outside the job's promise (an unhandled rejection): the child must not be reused. */
export interface TaintMessage {
  t: 'taint';
  error: SerializedError;
}

export type ChildMessage =
  | ReadyMessage
  | ProgressMessage
  | DoneMessage
  | TaintMessage
  | HooksMessage
  | ResultsMessage
  | DroppedMessage;

/**
 * Written to stdout and stderr by a pooled child after each job, before its result is reported, so the
 * parent knows where one job's output ends even though pipes and IPC are separate channels. Pipe
 * writes are synchronous, so the parent also learns from them which job the child runs: the first
 * whose markers have not both arrived (a job that blocks the child's event loop included).
 * The nonce (per child, passed in the MARKER_NONCE_ENV variable) keeps handlers from faking it by accident.
 */
export function endOfJobMarker(nonce: string): string {
  return `\u0000jobd-end-of-job:${nonce}\u0000`;
}
export const MARKER_NONCE_ENV = 'JOBD_SANDBOX_NONCE';
