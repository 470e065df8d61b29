import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { planFires } from '../../src/schedules/plan.js';
import { fireSeries, firstFireAfter, validateSchedule } from '../../src/schedules/spec.js';

const T = (iso: string): Date => new Date(iso);
const ms = (iso: string): number => Date.parse(iso);

describe('schedule definitions', () => {
  it('fills in the defaults', () => {
    expect(validateSchedule({ cron: '*/5 * * * *', type: 'echo' })).toEqual({
      cron: '*/5 * * * *',
      type: 'echo',
      params: {},
      catchUp: 'once',
      catchUpMax: 10,
    });
  });

  it.each([
    [
      { cron: '61 * * * *', type: 'echo' },
      'schedule.cron = "61 * * * *" is not allowed: must be a cron expression',
    ],
    [{ cron: 'every day', type: 'echo' }, 'schedule.cron = "every day" is not allowed'],
    [{ cron: '* * *', type: 'echo' }, 'it has 3 field(s)'],
    [
      { cron: '* * * * *', timezone: 'Mars/Olympus', type: 'echo' },
      'schedule.timezone = "Mars/Olympus" is not allowed: must be an IANA timezone name',
    ],
    [{ everyMs: 10, type: 'echo' }, 'schedule.everyMs = 10 is not allowed: must be an integer from 1000'],
    [{ everyMs: 'soon', type: 'echo' }, 'schedule.everyMs = "soon" is not allowed'],
    [{ type: 'echo' }, 'give exactly one of cron'],
    [{ cron: '* * * * *', everyMs: 5000, type: 'echo' }, 'both were given'],
    [
      { cron: '* * * * *', type: 'echo', catchUp: 'twice' },
      'schedule.catchUp = "twice" is not allowed: must be one of skip, once, all',
    ],
    [{ cron: '* * * * *', type: 'echo', catchUpMax: 0 }, 'schedule.catchUpMax = 0 is not allowed'],
    [
      { cron: '* * * * *', type: 'echo', params: [1] },
      'schedule.params = [1] is not allowed: must be a JSON object',
    ],
  ])('refuses %j naming the field and value', (input, message) => {
    expect(() => validateSchedule(input)).toThrow(message);
  });

  it('cron with seconds, in a timezone', () => {
    const every2s = fireSeries({ cron: '*/2 * * * * *' }, new Date(0));
    expect(every2s.after(T('2026-01-01T00:00:00.000Z'))).toEqual(T('2026-01-01T00:00:02.000Z'));
    expect(every2s.after(T('2026-01-01T00:00:01.500Z'))).toEqual(T('2026-01-01T00:00:02.000Z'));
    expect(every2s.before(T('2026-01-01T00:00:02.000Z'))).toEqual(T('2026-01-01T00:00:00.000Z'));
    // 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
    const nine = fireSeries({ cron: '0 9 * * *', timezone: 'America/New_York' }, new Date(0));
    expect(nine.after(T('2026-01-10T00:00:00Z'))).toEqual(T('2026-01-10T14:00:00Z'));
    expect(nine.after(T('2026-07-10T00:00:00Z'))).toEqual(T('2026-07-10T13:00:00Z'));
  });

  it('intervals run on a grid from their anchor', () => {
    const anchor = T('2026-01-01T00:00:00Z');
    const s = fireSeries({ everyMs: 5_000 }, anchor);
    expect(s.after(anchor)).toEqual(T('2026-01-01T00:00:05Z'));
    expect(s.after(T('2026-01-01T00:00:07Z'))).toEqual(T('2026-01-01T00:00:10Z'));
    expect(s.before(T('2026-01-01T00:00:10Z'))).toEqual(T('2026-01-01T00:00:05Z'));
    expect(s.before(T('2026-01-01T00:00:11Z'))).toEqual(T('2026-01-01T00:00:10Z'));
    expect(
      firstFireAfter({ everyMs: 5_000, type: 'x', params: {}, catchUp: 'once', catchUpMax: 1 }, anchor),
    ).toEqual(T('2026-01-01T00:00:05Z'));
  });
});

describe('which fires a due schedule creates', () => {
  const series = fireSeries({ cron: '* * * * * *' }, new Date(0));
  const base = {
    series,
    nextFireAt: T('2026-01-01T00:00:00Z'),
    now: T('2026-01-01T00:00:20.500Z'),
    catchUpMax: 3,
    limit: 500,
  };
  const up = (from: string, to: string): { from: number; to: number } => ({ from: ms(from), to: ms(to) });

  it('fires every fire time a daemon was up for, however late', () => {
    const p = planFires({
      ...base,
      up: [up('2025-12-31T00:00:00Z', '2026-01-01T00:00:20.500Z')],
      catchUp: 'skip',
    });
    expect(p.fires).toHaveLength(21);
    expect(p.fires.every((f) => !f.catchUp)).toBe(true);
    expect(p.nextFireAt).toEqual(T('2026-01-01T00:00:21Z'));
  });

  it.each([
    ['skip', [], 9],
    ['once', ['2026-01-01T00:00:09.000Z'], 8],
    ['all', ['2026-01-01T00:00:07.000Z', '2026-01-01T00:00:08.000Z', '2026-01-01T00:00:09.000Z'], 6],
  ] as const)('a stretch no daemon was up for follows catchUp %s', (catchUp, missed, skipped) => {
    // Up until 00:00:00.500, down 00:00:01..00:00:09 (and 00:00:10 is the restart).
    const p = planFires({
      ...base,
      catchUp,
      up: [
        up('2025-12-31T00:00:00Z', '2026-01-01T00:00:00.500Z'),
        up('2026-01-01T00:00:10Z', '2026-01-01T00:00:20.500Z'),
      ],
    });
    const catchUps = p.fires.filter((f) => f.catchUp).map((f) => f.at.toISOString());
    expect(catchUps).toEqual(missed);
    expect(p.skipped).toBe(skipped);
    // 00:00:00 and 00:00:10..20 are on time.
    expect(p.fires.filter((f) => !f.catchUp)).toHaveLength(12);
    expect(p.fires.map((f) => f.at.getTime())).toEqual(
      [...p.fires.map((f) => f.at.getTime())].sort((a, b) => a - b),
    );
  });

  it('stops at the limit and carries on from there', () => {
    const p = planFires({
      ...base,
      limit: 5,
      catchUp: 'once',
      up: [up('2025-12-31T00:00:00Z', '2026-01-01T01:00:00Z')],
    });
    expect(p.fires.map((f) => f.at.toISOString().slice(17, 19))).toEqual(['00', '01', '02', '03', '04']);
    expect(p.nextFireAt).toEqual(T('2026-01-01T00:00:05Z'));
  });

  it('nothing before nextFireAt', () => {
    const p = planFires({ ...base, now: T('2025-12-31T23:59:59Z'), catchUp: 'all', up: [] });
    expect(p.fires).toEqual([]);
    expect(p.nextFireAt).toEqual(base.nextFireAt);
  });
});

describe('schedules in the settings', () => {
  it('are validated with the rest and resolved with their defaults', () => {
    const c = loadConfig({
      env: {},
      overrides: { schedules: { nightly: { cron: '0 2 * * *', timezone: 'Europe/Berlin', type: 'echo' } } },
    });
    expect(c.schedules).toEqual({
      nightly: {
        cron: '0 2 * * *',
        timezone: 'Europe/Berlin',
        type: 'echo',
        params: {},
        catchUp: 'once',
        catchUpMax: 10,
      },
    });
    expect(c.worker.hookTimeoutMs).toBe(10_000);
    expect(() =>
      loadConfig({
        env: {},
        overrides: { schedules: { a: { everyMs: 500, type: 'echo' }, b: { cron: '* * * * *', type: 'x' } } },
      }),
    ).toThrow(/schedules\.a\.everyMs = 500 is not allowed[\s\S]*schedules\.b\.type = "x" is not allowed/);
  });
});
