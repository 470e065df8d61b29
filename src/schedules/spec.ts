/**
 * Schedule definitions: validation (every message names the field, the value and what is allowed) and
 * the series of fire times a definition describes. Pure: no database, no clock.
 */
import { CronExpressionParser } from 'cron-parser';
import { ValidationError } from '../errors.js';
import type { CatchUpPolicy, ScheduleDefinition } from '../types.js';

export const CATCH_UP_POLICIES: readonly CatchUpPolicy[] = ['skip', 'once', 'all'];
export const DEFAULT_CATCH_UP: CatchUpPolicy = 'once';
export const DEFAULT_CATCH_UP_MAX = 10;
export const MAX_CATCH_UP_MAX = 10_000;
/** Shortest interval: a schedule firing faster than this is a job loop, not a schedule. */
export const MIN_EVERY_MS = 1_000;
export const MAX_EVERY_MS = 366 * 24 * 60 * 60_000;
/** Schedule names: like job type names, without '@' (it separates name and time in a fireKey). */
export const SCHEDULE_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;

/** What a user writes (settings, jobctl, the library): loose, checked by validateSchedule. */
export interface ScheduleInput {
  cron?: unknown;
  everyMs?: unknown;
  timezone?: unknown;
  type?: unknown;
  params?: unknown;
  priority?: unknown;
  catchUp?: unknown;
  catchUpMax?: unknown;
}

function show(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** `field = value is not allowed: allowed` — the house format for a bad value. */
export function badValue(field: string, value: unknown, allowed: string): string {
  return `${field} = ${show(value)} is not allowed: ${allowed}`;
}

export function isKnownTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** Why a cron expression is refused, or null. Five fields (minute first) or six (second first). */
export function cronProblem(expr: unknown, timezone?: string): string | null {
  const allowed =
    'must be a cron expression of 5 fields (minute hour day-of-month month day-of-week) or 6 (second first), e.g. "*/5 * * * *"';
  if (typeof expr !== 'string' || expr.trim() === '') return allowed;
  const fields = expr.trim().split(/\s+/).length;
  if (fields < 5 || fields > 6) return `${allowed}; it has ${fields} field(s)`;
  try {
    CronExpressionParser.parse(expr, {
      currentDate: new Date(0),
      ...(timezone ? { tz: timezone } : {}),
    }).next();
  } catch (err) {
    return `${allowed} (${err instanceof Error ? err.message : String(err)})`;
  }
  return null;
}

/**
 * Check a schedule and fill in its defaults. `prefix` names where it came from ("schedules.nightly" in
 * settings, "schedule" for jobctl): every problem is listed, each naming its field.
 */
export function scheduleProblems(
  input: ScheduleInput,
  prefix: string,
): { problems: string[]; def?: ScheduleDefinition } {
  const problems: string[] = [];
  const f = (k: string): string => `${prefix}.${k}`;
  const hasCron = input.cron !== undefined;
  const hasEvery = input.everyMs !== undefined;
  if (hasCron === hasEvery) {
    problems.push(
      `${prefix}: give exactly one of cron (a cron expression) and everyMs (an interval in ms)${
        hasCron ? `; both were given (cron = ${show(input.cron)}, everyMs = ${show(input.everyMs)})` : ''
      }`,
    );
  }
  let timezone: string | undefined;
  if (input.timezone !== undefined) {
    if (typeof input.timezone !== 'string' || !isKnownTimezone(input.timezone)) {
      problems.push(
        badValue(
          f('timezone'),
          input.timezone,
          'must be an IANA timezone name, e.g. "UTC" or "Europe/Berlin"',
        ),
      );
    } else if (hasEvery && !hasCron) {
      problems.push(
        badValue(f('timezone'), input.timezone, 'applies to cron schedules only, not to everyMs'),
      );
    } else {
      timezone = input.timezone;
    }
  }
  if (hasCron) {
    const why = cronProblem(input.cron, timezone);
    if (why) problems.push(badValue(f('cron'), input.cron, why));
  }
  if (hasEvery) {
    const v = input.everyMs;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < MIN_EVERY_MS || v > MAX_EVERY_MS) {
      problems.push(
        badValue(f('everyMs'), v, `must be an integer from ${MIN_EVERY_MS} to ${MAX_EVERY_MS} (ms)`),
      );
    }
  }
  if (typeof input.type !== 'string' || input.type.trim() === '') {
    problems.push(badValue(f('type'), input.type, 'must be the name of a job type'));
  }
  const params = input.params === undefined ? {} : input.params;
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    problems.push(badValue(f('params'), input.params, 'must be a JSON object'));
  }
  if (
    input.priority !== undefined &&
    (typeof input.priority !== 'number' ||
      !Number.isInteger(input.priority) ||
      input.priority < 1 ||
      input.priority > 100)
  ) {
    problems.push(badValue(f('priority'), input.priority, 'must be an integer from 1 to 100'));
  }
  const catchUp = input.catchUp ?? DEFAULT_CATCH_UP;
  if (!CATCH_UP_POLICIES.includes(catchUp as CatchUpPolicy)) {
    problems.push(badValue(f('catchUp'), input.catchUp, `must be one of ${CATCH_UP_POLICIES.join(', ')}`));
  }
  const catchUpMax = input.catchUpMax ?? DEFAULT_CATCH_UP_MAX;
  if (
    typeof catchUpMax !== 'number' ||
    !Number.isInteger(catchUpMax) ||
    catchUpMax < 1 ||
    catchUpMax > MAX_CATCH_UP_MAX
  ) {
    problems.push(
      badValue(f('catchUpMax'), input.catchUpMax, `must be an integer from 1 to ${MAX_CATCH_UP_MAX}`),
    );
  }
  if (problems.length) return { problems };
  const def: ScheduleDefinition = {
    ...(hasCron ? { cron: (input.cron as string).trim() } : { everyMs: input.everyMs as number }),
    ...(timezone ? { timezone } : {}),
    type: input.type as string,
    params,
    ...(input.priority !== undefined ? { priority: input.priority as number } : {}),
    catchUp: catchUp as CatchUpPolicy,
    catchUpMax: catchUpMax as number,
  };
  return { problems, def };
}

export function checkScheduleName(name: unknown, field = 'name'): string {
  if (typeof name !== 'string' || !SCHEDULE_NAME.test(name)) {
    throw new ValidationError(
      badValue(
        field,
        name,
        'schedule names start with a letter and use letters, digits, _ . : - (at most 100)',
      ),
    );
  }
  return name;
}

/** validate or throw ValidationError listing every problem. */
export function validateSchedule(input: ScheduleInput, prefix = 'schedule'): ScheduleDefinition {
  const { problems, def } = scheduleProblems(input, prefix);
  if (!def) throw new ValidationError(problems.join('\n'));
  return def;
}

/** The fire times of a definition. `anchor` places an interval schedule's grid (its first fire time). */
export interface FireSeries {
  /** The first fire time strictly after `t`. */
  after(t: Date): Date;
  /** The last fire time strictly before `t`, or null. */
  before(t: Date): Date | null;
}

export function fireSeries(
  def: Pick<ScheduleDefinition, 'cron' | 'everyMs' | 'timezone'>,
  anchor: Date,
): FireSeries {
  if (def.everyMs !== undefined) {
    const every = def.everyMs;
    const a = anchor.getTime();
    return {
      after: (t) => new Date(a + (Math.floor((t.getTime() - a) / every) + 1) * every),
      before: (t) => new Date(a + (Math.ceil((t.getTime() - a) / every) - 1) * every),
    };
  }
  const expr = def.cron!;
  const tz = def.timezone ? { tz: def.timezone } : {};
  return {
    after: (t) =>
      CronExpressionParser.parse(expr, { currentDate: t, ...tz })
        .next()
        .toDate(),
    before: (t) => {
      try {
        return CronExpressionParser.parse(expr, { currentDate: t, ...tz })
          .prev()
          .toDate();
      } catch {
        return null; // no earlier fire time (cron-parser gives up after a long search)
      }
    },
  };
}

/** The first fire time of a new (or redefined, or resumed) schedule: the first one after `now`. */
export function firstFireAfter(def: ScheduleDefinition, now: Date): Date {
  // An interval schedule's grid starts one interval from now.
  if (def.everyMs !== undefined) return new Date(now.getTime() + def.everyMs);
  return fireSeries(def, now).after(now);
}

/** The definition fields that decide when a schedule fires: a change to them restarts its series. */
export function timingKey(def: Pick<ScheduleDefinition, 'cron' | 'everyMs' | 'timezone'>): string {
  return JSON.stringify([def.cron ?? null, def.everyMs ?? null, def.timezone ?? null]);
}
