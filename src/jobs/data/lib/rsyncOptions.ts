/**
 * rsync options as a typed allow-list, and the legacy `rsync_options` (a string or a list of flags)
 * accepted only when every flag maps onto that list. Anything else (`-e`, `--rsync-path`,
 * `--remove-source-files`, `--files-from`, ...) is refused, naming the flag.
 */
import type { z } from 'zod';
import { lazySchema } from '../../lazyZod.js';
import { DataInputError } from '../../lib/errors.js';

export const rsyncOptions = lazySchema((z) =>
  z
    .object({
      archive: z.boolean().optional().describe('-a (default true)'),
      recursive: z.boolean().optional(),
      delete: z.boolean().optional().describe('delete destination files absent from the source'),
      checksum: z.boolean().optional().describe('compare by checksum, not size and time'),
      compress: z.boolean().optional(),
      partial: z
        .boolean()
        .optional()
        .describe('keep partly transferred files, so a re-run resumes them (default true)'),
      dry_run: z.boolean().optional(),
      bwlimit: z
        .union([z.number().positive(), z.string().regex(/^\d+(\.\d+)?[KMGkmg]?$/)])
        .optional()
        .describe('KiB/s, or with a K/M/G suffix'),
      excludes: z.array(z.string().min(1)).optional(),
      includes: z.array(z.string().min(1)).optional(),
      times: z.boolean().optional(),
      perms: z.boolean().optional(),
      links: z.boolean().optional(),
      hard_links: z.boolean().optional(),
      update: z.boolean().optional(),
      size_only: z.boolean().optional(),
      ignore_existing: z.boolean().optional(),
      max_delete: z.number().int().min(0).optional(),
      timeout: z.number().int().min(0).optional().describe('I/O timeout in seconds'),
      contimeout: z.number().int().min(0).optional().describe('daemon connection timeout in seconds'),
    })
    .strict(),
);
export type RsyncOptions = z.infer<ReturnType<typeof rsyncOptions>>;

type BoolKey = {
  [K in keyof RsyncOptions]-?: RsyncOptions[K] extends boolean | undefined ? K : never;
}[keyof RsyncOptions];

const SHORT: Record<string, BoolKey | null> = {
  a: 'archive',
  r: 'recursive',
  c: 'checksum',
  z: 'compress',
  n: 'dry_run',
  t: 'times',
  p: 'perms',
  l: 'links',
  H: 'hard_links',
  u: 'update',
  v: null, // verbosity and human-readable output change nothing jobd relies on
  h: null,
  P: 'partial', // --partial --progress; jobd always reports progress
};
const LONG_BOOL: Record<string, BoolKey | null> = {
  archive: 'archive',
  recursive: 'recursive',
  delete: 'delete',
  checksum: 'checksum',
  compress: 'compress',
  partial: 'partial',
  'dry-run': 'dry_run',
  times: 'times',
  perms: 'perms',
  links: 'links',
  'hard-links': 'hard_links',
  update: 'update',
  'size-only': 'size_only',
  'ignore-existing': 'ignore_existing',
  verbose: null,
  progress: null,
  stats: null,
  'human-readable': null,
};
const LONG_VALUE = new Set(['bwlimit', 'exclude', 'include', 'max-delete', 'timeout', 'contimeout']);

/** Splits a legacy option string like a shell would, without any expansion: quotes group words. */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

/** Maps legacy flags onto the typed options; throws DataInputError naming the first flag off the list. */
export function parseLegacyRsyncOptions(flags: string | readonly string[]): RsyncOptions {
  const words = typeof flags === 'string' ? splitWords(flags) : [...flags];
  const out: RsyncOptions = {};
  const allowed =
    'allowed: -a -r -c -z -n -t -p -l -H -u -v -h -P and --archive --recursive --delete --checksum --compress --partial --dry-run --times --perms --links --hard-links --update --size-only --ignore-existing --verbose --progress --stats --human-readable --bwlimit= --exclude= --include= --max-delete= --timeout= --contimeout=';
  const refuse = (flag: string): never => {
    throw new DataInputError(`rsync_options: the flag "${flag}" is not allowed; ${allowed}`, { flag });
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (w.startsWith('--')) {
      const eq = w.indexOf('=');
      const name = eq === -1 ? w.slice(2) : w.slice(2, eq);
      if (eq === -1 && name in LONG_BOOL) {
        const key = LONG_BOOL[name];
        if (key) out[key] = true;
        continue;
      }
      if (!LONG_VALUE.has(name)) refuse(w);
      let value: string;
      if (eq !== -1) value = w.slice(eq + 1);
      else {
        const next = words[i + 1];
        if (next === undefined) throw new DataInputError(`rsync_options: "${w}" needs a value`);
        value = next;
        i++;
      }
      applyValue(out, name, value, w);
    } else if (w.startsWith('-') && w.length > 1) {
      for (const ch of w.slice(1)) {
        if (!(ch in SHORT)) refuse(`-${ch}${w.length > 2 ? ` (in "${w}")` : ''}`);
        const key = SHORT[ch];
        if (key) out[key] = true;
      }
    } else {
      throw new DataInputError(
        `rsync_options: "${w}" is not a flag; source and destination are their own fields`,
      );
    }
  }
  return out;
}

function applyValue(out: RsyncOptions, name: string, value: string, flag: string): void {
  const int = (): number => {
    if (!/^\d+$/.test(value))
      throw new DataInputError(`rsync_options: "${flag}" needs a whole number, got "${value}"`);
    return Number(value);
  };
  if (name === 'exclude') (out.excludes ??= []).push(value);
  else if (name === 'include') (out.includes ??= []).push(value);
  else if (name === 'bwlimit') {
    if (!/^\d+(\.\d+)?[KMGkmg]?$/.test(value))
      throw new DataInputError(`rsync_options: "${flag}": bad rate "${value}"`);
    out.bwlimit = value;
  } else if (name === 'max-delete') out.max_delete = int();
  else if (name === 'timeout') out.timeout = int();
  else if (name === 'contimeout') out.contimeout = int();
}

/** The rsync arguments for typed options (jobd's defaults: archive and partial on). */
export function rsyncArgs(o: RsyncOptions): string[] {
  const a: string[] = [];
  if (o.archive ?? true) a.push('--archive');
  const flags: Array<[BoolKey, string]> = [
    ['recursive', '--recursive'],
    ['delete', '--delete'],
    ['checksum', '--checksum'],
    ['compress', '--compress'],
    ['dry_run', '--dry-run'],
    ['times', '--times'],
    ['perms', '--perms'],
    ['links', '--links'],
    ['hard_links', '--hard-links'],
    ['update', '--update'],
    ['size_only', '--size-only'],
    ['ignore_existing', '--ignore-existing'],
  ];
  for (const [k, flag] of flags) if (o[k]) a.push(flag);
  if (o.partial ?? true) a.push('--partial');
  if (o.bwlimit !== undefined) a.push(`--bwlimit=${o.bwlimit}`);
  if (o.max_delete !== undefined) a.push(`--max-delete=${o.max_delete}`);
  if (o.timeout !== undefined) a.push(`--timeout=${o.timeout}`);
  if (o.contimeout !== undefined) a.push(`--contimeout=${o.contimeout}`);
  // Includes come first: rsync applies the first matching rule.
  for (const p of o.includes ?? []) a.push(`--include=${p}`);
  for (const p of o.excludes ?? []) a.push(`--exclude=${p}`);
  return a;
}
