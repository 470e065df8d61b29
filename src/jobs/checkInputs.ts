/**
 * Input validation at enqueue, shared by the library (JobdClient.enqueue/enqueueMany) and jobctl:
 * every job of a known type is parsed against its type's input schema, with data-dir paths resolved,
 * before anything is written. Jobs of types these settings do not define are not checked here (the
 * daemon that runs them checks them when they start).
 */
import { ValidationError } from '../errors.js';
import type { JobTypeDefinition } from '../types.js';
import { loadCatalogEntry } from './catalog.js';
import type { DataDirs } from './dataPath.js';
import { parseInput } from './defineJobType.js';

export interface InputToCheck {
  type: string;
  params: unknown;
  /** Where the job came from, put before each problem ("jobs.ndjson line 3: "). */
  where?: string;
}

const MAX_PROBLEMS = 20;

/** Throws one ValidationError listing every bad field of every job (at most 20 lines). */
export async function checkInputs(
  jobs: readonly InputToCheck[],
  jobTypes: Readonly<Record<string, JobTypeDefinition>>,
  dataDirs: DataDirs,
): Promise<void> {
  const problems: string[] = [];
  for (const job of jobs) {
    const def = jobTypes[job.type];
    if (!def) continue;
    const entry = await loadCatalogEntry(def);
    if (!entry.input) continue;
    const params = job.params === undefined ? null : job.params;
    const parsed = await parseInput(
      { input: entry.input, legacyNames: entry.legacyNames },
      params,
      dataDirs,
      'enqueue',
    );
    if (parsed.ok) continue;
    const head = `${job.where ?? ''}job type "${job.type}": `;
    for (const p of parsed.problems) problems.push(head + p);
    if (problems.length > MAX_PROBLEMS) break;
  }
  if (problems.length === 0) return;
  const shown = problems.slice(0, MAX_PROBLEMS);
  if (problems.length > MAX_PROBLEMS) shown.push('... and more');
  throw new ValidationError(`nothing was enqueued:\n${shown.join('\n')}`);
}
