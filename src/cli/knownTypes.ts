/**
 * Which job types jobctl may enqueue without --allow-unknown-type: the types its settings define plus
 * the types that live daemons registered (their worker documents list them). In a mixed fleet a type
 * may be known only to a daemon on another host; a type nobody knows yet (a rolling deploy) needs the flag.
 */
import { SYSTEM_PREFIX } from '../config/systemJobs.js';
import type { ResolvedConfig } from '../config/types.js';
import { didYouMean } from '../config/validate.js';
import { ValidationError } from '../errors.js';
import type { Store } from '../store/types.js';
import { listWorkers } from '../store/workers.js';

export interface KnownTypes {
  fromSettings: string[];
  /** Types registered by daemons alive now (not stopped, heartbeat within two lease periods). */
  fromDaemons: string[];
}

export async function knownTypes(config: ResolvedConfig, store: Store, now: Date): Promise<KnownTypes> {
  const workers = await listWorkers(store, { now, leaseMs: config.worker.leaseMs, includeStopped: false });
  const fromDaemons = new Set<string>();
  for (const w of workers) {
    if (w.dead) continue;
    // Daemons that predate type registration have no `types` field: they add nothing.
    const types = (w as { types?: unknown }).types;
    if (Array.isArray(types)) for (const t of types) if (typeof t === 'string') fromDaemons.add(t);
  }
  return { fromSettings: Object.keys(config.jobTypes).sort(), fromDaemons: [...fromDaemons].sort() };
}

/** Throws (exit 2) naming each unknown type and what is known, unless unknown types are allowed. */
export function checkTypes(
  types: Iterable<string>,
  known: KnownTypes,
  where: (type: string) => string,
): void {
  const all = new Set([...known.fromSettings, ...known.fromDaemons]);
  const unknown = [...new Set(types)].filter((t) => !all.has(t));
  if (unknown.length === 0) return;
  // jobd's own types (jobd.retention) are known, but not offered: their schedules enqueue them.
  const shown = (t: string) => !t.startsWith(SYSTEM_PREFIX);
  const list = [...all].filter(shown).sort();
  const lines = unknown.map((t) => {
    const hint = didYouMean(t, list);
    return `job type "${t}"${where(t)} is not known: no settings define it and no live daemon runs it${
      hint ? `; did you mean "${hint}"?` : ''
    }`;
  });
  const settings = known.fromSettings.filter(shown);
  const daemons = known.fromDaemons.filter((t) => !known.fromSettings.includes(t) && shown(t));
  lines.push(
    `known types: ${settings.join(', ') || '(none)'}${
      daemons.length ? `, and from live daemons: ${daemons.join(', ')}` : ''
    }`,
    'to enqueue it anyway (a daemon that knows the type will run it once it starts), add --allow-unknown-type',
  );
  throw new ValidationError(lines.join('\n'));
}
