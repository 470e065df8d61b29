/**
 * The checks of a typed job type, done by the daemon around an isolated child: the input is parsed when
 * the job starts (data-dir paths resolved anew, as the child's wrapper would) and the child gets the
 * parsed input; the handler's output is validated here (JOBD_INVALID_OUTPUT). zod is loaded in this
 * process anyway, and an isolated child that never loads it starts ~130 ms of CPU cheaper (Node 20
 * compiles zod's ~95 modules in every new process).
 *
 * Only for jobd's own job types defined with `schemas: (z) => …` and without lifecycle hooks (a hook
 * in the child would see an output the daemon may still refuse): the daemon imports their modules once,
 * as jobctl does. Users' modules are not imported into the daemon; their children check as before.
 */
import { fileURLToPath } from 'node:url';
import { loadHandlerModule } from '../jobs/catalog.js';
import { dataDirsFromText } from '../jobs/dataDirsText.js';
import type { DataDirs } from '../jobs/dataPath.js';
import {
  checkOutput,
  inputNotValid,
  isDefinedJobType,
  parseInput,
  type DefinedJobType,
} from '../jobs/defineJobType.js';

const JOBS_DIR = fileURLToPath(new URL('../jobs/', import.meta.url));
const HOOK_NAMES = ['onStart', 'onSuccess', 'onFailure', 'onRetry'] as const;

const known = new Map<string, DefinedJobType | null>();
const loading = new Map<string, Promise<DefinedJobType | null>>();

async function load(handler: string): Promise<DefinedJobType | null> {
  try {
    const mod = await loadHandlerModule(handler);
    const d = mod.default;
    if (!isDefinedJobType(d) || !d.lazy) return null;
    const hooked = HOOK_NAMES.some(
      (h) =>
        typeof mod[h] === 'function' || typeof (d as unknown as Record<string, unknown>)[h] === 'function',
    );
    return hooked ? null : d;
  } catch {
    // The child reports why its module cannot be loaded, as for any other job.
    return null;
  }
}

/** The type whose checks the daemon does for an isolated job of this handler module, or null. */
export function daemonCheckedType(handler: string): DefinedJobType | null | Promise<DefinedJobType | null> {
  const hit = known.get(handler);
  if (hit !== undefined) return hit;
  if (!handler.startsWith(JOBS_DIR)) {
    known.set(handler, null);
    return null;
  }
  let p = loading.get(handler);
  if (!p) {
    p = load(handler).then((d) => {
      known.set(handler, d);
      loading.delete(handler);
      return d;
    });
    loading.set(handler, p);
  }
  return p;
}

let parsedDirs: { text: string; dirs: DataDirs } | undefined;

function dataDirsOf(env: Readonly<Record<string, string>> | undefined): DataDirs {
  const text = env?.JOBD_DATA_DIRS;
  if (!text) return {};
  if (parsedDirs?.text !== text) parsedDirs = { text, dirs: dataDirsFromText(text) };
  return parsedDirs.dirs;
}

/**
 * Parse a job's params for its run, with the data dirs its child gets (JOBD_DATA_DIRS of its env): the
 * parsed input and the paths it declared, or the error the child's wrapper would have thrown.
 */
export async function parseForRun(
  def: DefinedJobType,
  params: unknown,
  env: Readonly<Record<string, string>> | undefined,
): Promise<{ ok: true; input: unknown; paths: unknown[] } | { ok: false; error: Error }> {
  const parsed = await parseInput(def, params, dataDirsOf(env), 'run');
  if (!parsed.ok) return { ok: false, error: inputNotValid(def.name, parsed.problems) };
  return { ok: true, input: parsed.input, paths: parsed.paths };
}

export { checkOutput };
