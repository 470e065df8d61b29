/**
 * zod issues as jobd messages: each names the field's path, the value given and what is allowed, e.g.
 *   params.ms = "soon" is not allowed: expected number, received string
 */
import type { z } from 'zod';
import { redact } from '../redact.js';

/** A value for a message: JSON, credentials hidden, cut short (as the settings messages do). */
function formatValue(value: unknown): string {
  if (value === undefined) return '(missing)';
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = String(value);
  }
  s = redact(s);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p as string];
  }
  return cur;
}

/**
 * One line per issue. `aliases` (legacy name → name) finds a value given under its legacy name, so
 * the message shows what the user sent.
 */
export function issueLines(
  issues: readonly z.core.$ZodIssue[],
  raw: unknown,
  prefix: string,
  aliases: Readonly<Record<string, string>> = {},
): string[] {
  const byName = Object.fromEntries(Object.entries(aliases).map(([legacy, name]) => [name, legacy]));
  const lines: string[] = [];
  for (const issue of issues) {
    const path = issue.path as PropertyKey[];
    const field = [prefix, ...path.map(String)].filter((p) => p !== '').join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        const full = [prefix, ...path.map(String), key].filter((p) => p !== '').join('.');
        lines.push(`${full} = ${formatValue(valueAt(raw, [...path, key]))} is not allowed: unknown field`);
      }
      continue;
    }
    let value = valueAt(raw, path);
    let label = field || prefix || '(input)';
    const legacy = path.length === 1 ? byName[String(path[0])] : undefined;
    if (value === undefined && legacy !== undefined && valueAt(raw, [legacy]) !== undefined) {
      value = valueAt(raw, [legacy]);
      label = `${[prefix, legacy].filter((p) => p !== '').join('.')} (legacy name of ${String(path[0])})`;
    }
    const message = issue.message.replace(/^Invalid input: /, '');
    lines.push(`${label} = ${formatValue(value)} is not allowed: ${message}`);
  }
  return lines;
}
