/**
 * The data dirs as text (JOBD_DATA_DIRS): a JSON object of name → path, or a comma-separated list
 * whose entries are `name=path` or a bare path (named after its last segment).
 */
import { basename } from 'node:path';

export function dataDirsFromText(text: string): Record<string, string> {
  const t = text.trim();
  if (t.startsWith('{')) {
    const parsed: unknown = JSON.parse(t);
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(
      Object.entries(parsed as Record<string, unknown>).filter(([, v]) => typeof v === 'string'),
    ) as Record<string, string>;
  }
  return dataDirsFromList(t === '' ? [] : t.split(',').map((p) => p.trim()));
}

/** A list of `name=path` or bare paths as named dirs (a bare path is named after its last segment). */
export function dataDirsFromList(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of list) {
    const m = /^([A-Za-z][A-Za-z0-9_-]*)=(.+)$/.exec(entry);
    if (m) out[m[1]!] = m[2]!;
    else out[basename(entry) || entry] = entry;
  }
  return out;
}
