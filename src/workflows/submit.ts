/**
 * A workflow submission as the library and jobctl give it: checked as a whole (fields, keys,
 * dependencies, cycles) before anything is written, then handed to the store's crash-safe submit.
 */
import { ValidationError } from '../errors.js';
import {
  resolveNewJob,
  submitWorkflowJobs,
  type JobDefaults,
  type Store,
  type SubmitResult,
  type WorkflowJobInput,
} from '../store/index.js';
import type { DependencyFailurePolicy, EnqueueOptions } from '../types.js';
import { validateDag } from './dag.js';

export interface WorkflowJobSpec {
  key: string;
  type: string;
  params?: unknown;
  /** Keys of the jobs of this workflow that must complete first. */
  dependsOn?: string[];
  onDependencyFailure?: DependencyFailurePolicy;
  options?: Omit<EnqueueOptions, 'dependsOn' | 'onDependencyFailure' | 'dedupeKey'>;
}

export interface WorkflowSpec {
  /** Choose the id to make a re-submit idempotent (a 24-hex-digit or any non-empty string). */
  id?: string;
  name: string;
  jobs: WorkflowJobSpec[];
}

/** Jobs one workflow may hold (its key map must fit in one document). */
export const MAX_WORKFLOW_JOBS = 100_000;

/** Check a workflow spec and resolve each job; throws ValidationError naming the job and field. */
export function resolveWorkflow(
  spec: WorkflowSpec,
  defaultsFor: (type: string) => JobDefaults,
  now: Date,
): { id?: string; name: string; jobs: WorkflowJobInput[] } {
  if (!spec || typeof spec !== 'object') {
    throw new ValidationError(
      `a workflow must be an object { name, jobs: [...] }; got ${JSON.stringify(spec)}`,
    );
  }
  if (typeof spec.name !== 'string' || spec.name.trim() === '') {
    throw new ValidationError(`workflow name must be a non-empty string; got ${JSON.stringify(spec.name)}`);
  }
  if (spec.id !== undefined && (typeof spec.id !== 'string' || spec.id === '')) {
    throw new ValidationError(`workflow id must be a non-empty string; got ${JSON.stringify(spec.id)}`);
  }
  if (!Array.isArray(spec.jobs) || spec.jobs.length === 0) {
    throw new ValidationError(`workflow jobs must be a non-empty array; got ${JSON.stringify(spec.jobs)}`);
  }
  if (spec.jobs.length > MAX_WORKFLOW_JOBS) {
    throw new ValidationError(
      `workflow has ${spec.jobs.length} jobs; at most ${MAX_WORKFLOW_JOBS} are allowed`,
    );
  }
  spec.jobs.forEach((j, i) => {
    if (!j || typeof j !== 'object')
      throw new ValidationError(`jobs[${i}] must be an object; got ${JSON.stringify(j)}`);
  });
  validateDag(spec.jobs.map((j) => ({ key: j.key, dependsOn: j.dependsOn ?? [] })));
  const jobs = spec.jobs.map((j, i) => {
    try {
      const job = resolveNewJob(
        j.type,
        j.params,
        {
          ...(j.options ?? {}),
          ...(j.onDependencyFailure ? { onDependencyFailure: j.onDependencyFailure } : {}),
        },
        defaultsFor(j.type),
        now,
      );
      return { key: j.key, dependsOn: [...new Set(j.dependsOn ?? [])], job };
    } catch (err) {
      if (err instanceof ValidationError)
        throw new ValidationError(`jobs[${i}] (${JSON.stringify(j.key)}): ${err.message}`);
      throw err;
    }
  });
  return { ...(spec.id !== undefined ? { id: spec.id } : {}), name: spec.name, jobs };
}

/** Validate, then submit (crash-safe; idempotent for a given id). */
export async function submitWorkflow(
  store: Store,
  spec: WorkflowSpec,
  defaultsFor: (type: string) => JobDefaults,
  now: Date,
): Promise<SubmitResult> {
  return submitWorkflowJobs(store, resolveWorkflow(spec, defaultsFor, now), now);
}
