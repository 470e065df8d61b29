/**
 * A small JSON path: dot-separated field names, numbers index arrays; "" or "$" is the value itself
 * ("$.data.items", "data.items", "meta.next_cursor", "results.0.rows").
 */
export function valueAt(value: unknown, path: string): unknown {
  const rest = path.replace(/^\$\.?/, '');
  if (rest === '') return value;
  let v = value;
  for (const key of rest.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    if (Array.isArray(v)) {
      if (!/^\d+$/.test(key)) return undefined;
      v = v[Number(key)];
    } else {
      v = Object.hasOwn(v, key) ? (v as Record<string, unknown>)[key] : undefined;
    }
  }
  return v;
}
