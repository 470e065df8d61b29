/** Durations as people write them in settings and flags: "30d", "12h", "90m", "45s", "500ms", "2w". */
const UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

export const DURATION_ALLOWED = 'must be a duration such as 30d, 12h, 90m, 45s or 500ms (units ms s m h d w)';

/** Milliseconds, or null when `text` is not a duration. */
export function parseDuration(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$/.exec(text);
  if (!m) return null;
  const ms = Number(m[1]) * UNITS[m[2]!]!;
  return Number.isFinite(ms) && ms > 0 ? Math.round(ms) : null;
}
