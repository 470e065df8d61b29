/**
 * Queue administration, shared by the library (JobdClient) and jobctl: which types make up a queue,
 * per-queue counts, pause/resume, and cleaning a queue's finished jobs.
 *
 * A job's queue is its type's: the type's `queue` setting, else the queue its module declares, else
 * the type's name. A type these settings do not define belongs to the queue of its own name.
 */
import { loadCatalogEntry, queueOf } from './jobs/catalog.js';
import { isOwnBuiltin } from './jobs/registry.js';
import {
  cleanQueue,
  countByTypeAndState,
  countCleanable,
  listQueueDocs,
  setQueuePaused,
  type QueueDoc,
  type Store,
} from './store/index.js';
import { JOB_STATES, type JobState, type JobTypeDefinition } from './types.js';

type JobTypes = Readonly<Record<string, JobTypeDefinition>>;

/** type → queue for the given types (a module that cannot be loaded keeps the setting or the name). */
export async function queueMembership(jobTypes: JobTypes): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  await Promise.all(
    Object.values(jobTypes).map(async (def) => {
      // A built-in declares no queue: importing its module (a daemon start imported all thirty, with
      // everything they import) would only say what its name says.
      if (def.queue !== undefined || isOwnBuiltin(def)) {
        out[def.name] = queueOf(def);
        return;
      }
      try {
        out[def.name] = (await loadCatalogEntry(def)).queue;
      } catch {
        out[def.name] = queueOf(def);
      }
    }),
  );
  return out;
}

/** The types of a queue: those mapped to it, plus a type of its name these settings do not define. */
export function typesOfQueue(name: string, membership: Readonly<Record<string, string>>): string[] {
  const types = Object.entries(membership)
    .filter(([, q]) => q === name)
    .map(([t]) => t);
  if (!(name in membership)) types.push(name);
  return types.sort();
}

export interface QueueSummary {
  name: string;
  paused: boolean;
  pausedAt: Date | null;
  /** The job types in it (by these settings) that have jobs or are defined. */
  types: string[];
  /** Jobs per state (every state present). */
  counts: Record<JobState, number>;
  /** Creation time of its oldest job in state queued, and that job's age at `now`. */
  oldestQueuedAt: Date | null;
  oldestQueuedAgeMs: number | null;
  /** Its per-daemon concurrency setting, when it has one. */
  concurrency: number | null;
}

export async function queueSummaries(
  store: Store,
  jobTypes: JobTypes,
  settings: Readonly<Record<string, { concurrency?: number }>>,
  now: Date,
): Promise<QueueSummary[]> {
  const membership = await queueMembership(jobTypes);
  const [{ counts, oldestQueued }, docs] = await Promise.all([
    countByTypeAndState(store),
    listQueueDocs(store),
  ]);
  const byName = new Map<string, QueueSummary>();
  const summary = (name: string): QueueSummary => {
    let s = byName.get(name);
    if (!s) {
      s = {
        name,
        paused: false,
        pausedAt: null,
        types: [],
        counts: Object.fromEntries(JOB_STATES.map((st) => [st, 0])) as Record<JobState, number>,
        oldestQueuedAt: null,
        oldestQueuedAgeMs: null,
        concurrency: settings[name]?.concurrency ?? null,
      };
      byName.set(name, s);
    }
    return s;
  };
  const addType = (s: QueueSummary, type: string): void => {
    if (!s.types.includes(type)) s.types.push(type);
  };
  for (const [type, queue] of Object.entries(membership)) addType(summary(queue), type);
  for (const name of Object.keys(settings)) summary(name);
  for (const c of counts) {
    const s = summary(membership[c.type] ?? c.type);
    addType(s, c.type);
    s.counts[c.state] = (s.counts[c.state] ?? 0) + c.n;
  }
  for (const [type, at] of Object.entries(oldestQueued)) {
    const s = summary(membership[type] ?? type);
    if (!s.oldestQueuedAt || at < s.oldestQueuedAt) s.oldestQueuedAt = at;
  }
  for (const d of docs as QueueDoc[]) {
    const s = summary(d._id);
    s.paused = d.paused;
    s.pausedAt = d.paused ? (d.pausedAt ?? d.updatedAt) : null;
  }
  const out = [...byName.values()].sort((a, b) => a.name.localeCompare(b.name));
  for (const s of out) {
    s.types.sort();
    s.oldestQueuedAgeMs = s.oldestQueuedAt ? Math.max(0, now.getTime() - s.oldestQueuedAt.getTime()) : null;
  }
  return out;
}

export function pauseQueue(store: Store, name: string, opts: { now: Date; by?: string }): Promise<QueueDoc> {
  return setQueuePaused(store, name, true, opts);
}

export function resumeQueue(store: Store, name: string, opts: { now: Date; by?: string }): Promise<QueueDoc> {
  return setQueuePaused(store, name, false, opts);
}

export interface CleanQueueOptions {
  state: 'completed' | 'failed' | 'cancelled';
  /** Only jobs that finished before this. */
  before?: Date;
  /** Count what would be deleted, delete nothing. */
  dryRun?: boolean;
  chunk?: number;
  /** Each deleted batch's ids (jobctl removes their log files). */
  onDeleted?: (ids: string[]) => Promise<void> | void;
}

export interface CleanQueueResult {
  queue: string;
  types: string[];
  state: string;
  dryRun: boolean;
  /** Jobs that match (dry run) or were deleted. */
  jobs: number;
  /** History events deleted with them (0 on a dry run). */
  events: number;
}

export async function cleanQueueJobs(
  store: Store,
  jobTypes: JobTypes,
  name: string,
  opts: CleanQueueOptions,
): Promise<CleanQueueResult> {
  const types = typesOfQueue(name, await queueMembership(jobTypes));
  const base = {
    types,
    state: opts.state,
    ...(opts.before ? { before: opts.before } : {}),
    ...(opts.chunk ? { chunk: opts.chunk } : {}),
  };
  const head = { queue: name, types, state: opts.state, dryRun: !!opts.dryRun };
  if (opts.dryRun) return { ...head, jobs: await countCleanable(store, base), events: 0 };
  const res = await cleanQueue(store, { ...base, ...(opts.onDeleted ? { onDeleted: opts.onDeleted } : {}) });
  return { ...head, ...res };
}
