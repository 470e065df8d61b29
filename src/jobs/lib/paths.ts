/**
 * The data-dir guard. Every path a dataset job touches is resolved with realpath (symlinks included)
 * and must stay inside one of the data dirs. A path that does not exist yet (an output) is resolved
 * through its nearest existing ancestor plus the rest. Checked when the job is enqueued, again when it
 * runs, and once more right before a write (`recheck`), so a symlink swapped in meanwhile is refused.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { DataInputError, PathNotAllowedError } from './errors.js';

/** Data dirs: a list of roots, or roots by name (`{ upload, converted, sync, auth, backup }`). */
export type DataRoots = readonly string[] | Readonly<Record<string, string>>;

export interface ConfineOptions {
  /** The input field, named in errors (`source_dir`, `files[2]`). */
  field: string;
  /** The path must exist. */
  mustExist?: boolean;
  /** The job will write there (also checked again by `recheck` before the write). */
  forWrite?: boolean;
  /** What an existing path must be. */
  kind?: 'file' | 'dir';
}

export interface ConfinedPath {
  field: string;
  /** The path as given. */
  input: string;
  /** Its resolution: realpath of the nearest existing ancestor, plus the part that does not exist. */
  real: string;
  /** The data dir it is in (real path) and that dir's name when the roots are named. */
  root: string;
  rootName?: string;
  exists: boolean;
}

interface Root {
  name?: string;
  path: string;
  real: string | null;
}

function rootList(roots: DataRoots): Array<{ name?: string; path: string }> {
  if (Array.isArray(roots)) return (roots as readonly string[]).map((path) => ({ path }));
  return Object.entries(roots as Record<string, string>).map(([name, path]) => ({ name, path }));
}

async function resolveRoots(roots: DataRoots): Promise<Root[]> {
  return Promise.all(
    rootList(roots).map(async (r) => ({ ...r, real: await realpath(r.path).catch(() => null) })),
  );
}

function describeRoots(roots: Root[]): string {
  if (roots.length === 0) return '(no data dirs are configured)';
  return roots.map((r) => (r.name ? `${r.name}=${r.path}` : r.path)).join(', ');
}

export function isInside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** The named data dir, or an error naming the setting. */
export function namedRoot(roots: DataRoots, name: string): string {
  const hit = rootList(roots).find((r) => r.name === name);
  if (!hit) {
    throw new DataInputError(
      `the data dir "${name}" is not configured (dataDirs.${name}); configured: ${rootList(roots)
        .map((r) => r.name ?? r.path)
        .join(', ')}`,
    );
  }
  return hit.path;
}

/**
 * Resolves `path` and checks it lies inside a data dir. Refuses relative paths and `..` segments,
 * paths outside every data dir (after following symlinks), missing paths when `mustExist`, and the
 * wrong kind of file.
 */
export async function confine(path: string, roots: DataRoots, opts: ConfineOptions): Promise<ConfinedPath> {
  const { field } = opts;
  if (typeof path !== 'string' || path === '') {
    throw new DataInputError(`${field}: must be a non-empty absolute path; got ${JSON.stringify(path)}`);
  }
  if (!isAbsolute(path)) {
    throw new DataInputError(`${field}: "${path}" must be an absolute path inside the data dirs`);
  }
  if (path.includes('\0')) throw new DataInputError(`${field}: the path contains a NUL byte`);
  if (path.split('/').includes('..')) {
    throw new PathNotAllowedError(`${field}: "${path}" must not contain ".." segments`);
  }
  const resolved = await resolveRoots(roots);
  const { real, exists } = await resolveExisting(path);
  const root = resolved
    .filter((r) => r.real !== null && isInside(real, r.real))
    .sort((a, b) => b.real!.length - a.real!.length)[0];
  if (!root) {
    const via = real !== path ? ` (it resolves to "${real}")` : '';
    throw new PathNotAllowedError(
      `${field}: "${path}"${via} is outside the data dirs; allowed: ${describeRoots(resolved)}`,
      { field, path, resolved: real, allowed: resolved.map((r) => r.path) },
    );
  }
  if (!exists && opts.mustExist) {
    throw new DataInputError(`${field}: "${path}" does not exist`);
  }
  if (exists && opts.kind) {
    const st = await stat(real);
    if (opts.kind === 'dir' && !st.isDirectory()) {
      throw new DataInputError(`${field}: "${path}" must be a directory`);
    }
    if (opts.kind === 'file' && !st.isFile()) {
      throw new DataInputError(`${field}: "${path}" must be a regular file`);
    }
  }
  return {
    field,
    input: path,
    real,
    root: root.real!,
    ...(root.name ? { rootName: root.name } : {}),
    exists,
  };
}

/** realpath of the path, or of its nearest existing ancestor joined with the missing rest. */
async function resolveExisting(path: string): Promise<{ real: string; exists: boolean }> {
  const rest: string[] = [];
  let cur = path;
  for (;;) {
    try {
      const real = await realpath(cur);
      return { real: rest.length ? join(real, ...rest.reverse()) : real, exists: rest.length === 0 };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // ENOENT: missing; ENOTDIR: a file where a directory was expected. ELOOP and the rest are real.
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      const parent = dirname(cur);
      if (parent === cur) throw err;
      rest.push(basename(cur));
      cur = parent;
    }
  }
}

/**
 * Checks again, right before a write, that the path still resolves where it did: a symlink swapped
 * in after the first check (even one that stays inside the data dirs) is refused.
 */
export async function recheck(confined: ConfinedPath, roots: DataRoots): Promise<ConfinedPath> {
  const again = await confine(confined.input, roots, { field: confined.field });
  if (again.real !== confined.real) {
    throw new PathNotAllowedError(
      `${confined.field}: "${confined.input}" changed while the job ran: it resolved to "${confined.real}" and now resolves to "${again.real}" (a symlink was swapped in); refusing to write`,
      { field: confined.field, path: confined.input, before: confined.real, now: again.real },
    );
  }
  return again;
}
