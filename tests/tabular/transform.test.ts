/** data_transform's core on real files: conversions and their errors against a table, each error policy, expressions. */
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInput } from '../../src/jobs/defineJobType.js';
import dataTransform from '../../src/jobs/tabular/dataTransform.js';
import { convertValue, type ConvertOptions } from '../../src/jobs/tabular/lib/convert.js';
import { transformRecords, type TransformSpec } from '../../src/jobs/tabular/lib/transform.js';
import { failure, recordingContext, tempDir } from '../data/helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('transform'));
});
afterAll(() => cleanup());

const E = (message: string) => ({ error: message });

// [to (and options), value, expected value or error]
const TABLE: [ConvertOptions, unknown, unknown][] = [
  [{ to: 'int' }, 42, 42],
  [{ to: 'int' }, ' -7 ', -7],
  [{ to: 'int' }, '+12', 12],
  [{ to: 'int' }, 3.5, E('not an integer (or beyond ±2^53)')],
  [{ to: 'int' }, '3.0', E('not an integer')],
  [{ to: 'int' }, '12abc', E('not an integer')],
  [{ to: 'int' }, '9007199254740993', E('integer beyond ±2^53')],
  [{ to: 'int' }, true, E('a boolean does not convert to int')],
  [{ to: 'int' }, '', null],
  [{ to: 'int' }, null, null],
  [{ to: 'float' }, '2.5', 2.5],
  [{ to: 'float' }, '-.5e2', -50],
  [{ to: 'float' }, 7, 7],
  [{ to: 'float' }, '1e999', E('beyond the range of a double')],
  [{ to: 'float' }, 'NaN', E('not a number')],
  [{ to: 'float' }, '1,5', E('not a number')],
  [{ to: 'float' }, [1], E('a array does not convert to float')],
  [{ to: 'bool' }, 'Yes', true],
  [{ to: 'bool' }, 'f', false],
  [{ to: 'bool' }, 0, false],
  [{ to: 'bool' }, true, true],
  [{ to: 'bool' }, 2, E('a number does not convert to bool')],
  [{ to: 'bool' }, 'maybe', E('not a boolean (true/false, t/f, yes/no, y/n, 1/0)')],
  [{ to: 'date' }, '2024-02-29', '2024-02-29T00:00:00.000Z'],
  [{ to: 'date' }, '2024-03-01T12:30:15.25+02:00', '2024-03-01T10:30:15.250Z'],
  [{ to: 'date' }, '2024-03-01 08:00', '2024-03-01T08:00:00.000Z'],
  [{ to: 'date', format: 'epoch_ms' }, '1970-01-02', 86_400_000],
  [{ to: 'date', format: 'epoch_s' }, '1970-01-01T00:01:00Z', 60],
  [{ to: 'date' }, 0, '1970-01-01T00:00:00.000Z'],
  [{ to: 'date', epoch_unit: 's' }, 86_400, '1970-01-02T00:00:00.000Z'],
  [{ to: 'date' }, '2023-02-29', E('not a calendar date')],
  [{ to: 'date' }, '2024-01-01T24:00', E('not a time of day')],
  [{ to: 'date' }, '01/02/2024', E('not a date (YYYY-MM-DD, optionally THH:MM[:SS[.fff]] and Z or ±HH:MM)')],
  [{ to: 'date' }, 9e15, E('outside the range of dates')],
  [{ to: 'date' }, false, E('a boolean does not convert to date')],
  [{ to: 'string' }, 12.5, '12.5'],
  [{ to: 'string' }, false, 'false'],
  [{ to: 'string' }, { a: [1] }, '{"a":[1]}'],
  [{ to: 'string' }, '', ''],
];

describe('data_transform', () => {
  it('converts values as the table says, and refuses those it lists as errors', () => {
    const got = TABLE.map(([opts, value]) => {
      const c = convertValue(value, opts);
      return c.ok ? c.value : E(c.message);
    });
    expect(got).toEqual(TABLE.map((row) => row[2]));
  });

  async function run(spec: Partial<TransformSpec>, lines: unknown[], name: string) {
    const input = join(dir, `${name}.in.ndjson`);
    await writeFile(input, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const full: TransformSpec = {
      input,
      output: join(dir, `${name}.out.ndjson`),
      rename: {},
      defaults: {},
      convert: {},
      compute: {},
      compute_on_error: 'fail',
      drop: [],
      ...spec,
    };
    const ctx = recordingContext();
    const result = await transformRecords(full, ctx);
    const read = async (p?: string) =>
      p
        ? (await readFile(p, 'utf8'))
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as Record<string, unknown>)
        : [];
    return { result, out: await read(full.output), quarantined: await read(full.quarantine), ctx };
  }

  const ROWS = [
    { id: '1', Price: '2.50', qty: '4', paid: 'yes', day: '2024-05-01', tmp: 1 },
    { id: '2', Price: 'n/a', qty: '1', paid: 'no', day: '2024-05-02', tmp: 2 },
    { id: '3', Price: '1.25', qty: 'two', paid: 'y', day: '2024-13-01', tmp: 3 },
    { id: '4', qty: null, paid: '1', day: '2024-05-04', tmp: 4 },
  ];

  it('renames, defaults, converts, computes with MongoDB expressions and drops, in that order', async () => {
    const { result, out } = await run(
      {
        rename: { Price: 'price' },
        defaults: { price: '0', qty: '1' },
        convert: {
          id: { to: 'int', on_error: 'fail' },
          price: { to: 'float', on_error: 'null' },
          qty: { to: 'int', on_error: 'null' },
          paid: { to: 'bool', on_error: 'fail' },
          day: { to: 'date', format: 'epoch_s', on_error: 'null' },
        },
        compute: {
          total: { $multiply: ['$price', '$qty'] },
          label: { $concat: [{ $toString: '$id' }, '-', { $cond: ['$paid', 'paid', 'open'] }] },
          tmp2: { $add: ['$tmp', 1] },
        },
        compute_on_error: 'null',
        drop: ['tmp'],
      },
      ROWS,
      'order',
    );
    expect(out).toEqual([
      { id: 1, price: 2.5, qty: 4, paid: true, day: 1714521600, total: 10, label: '1-paid', tmp2: 2 },
      { id: 2, price: null, qty: 1, paid: false, day: 1714608000, total: null, label: '2-open', tmp2: 3 },
      { id: 3, price: 1.25, qty: null, paid: true, day: null, total: null, label: '3-paid', tmp2: 4 },
      { id: 4, qty: 1, paid: true, day: 1714780800, price: 0, total: 0, label: '4-paid', tmp2: 5 },
    ]);
    expect(result).toEqual({
      rows_read: 4,
      rows_written: 4,
      rows_skipped: 0,
      rows_quarantined: 0,
      errors_by_field: { price: 1, qty: 1, day: 1 },
    });
  });

  it('skips or quarantines a row by its field policy (the strictest of its errors wins)', async () => {
    const quarantine = join(dir, 'q.ndjson');
    const { result, out, quarantined } = await run(
      {
        quarantine,
        convert: {
          Price: { to: 'float', on_error: 'skip' },
          qty: { to: 'int', on_error: 'quarantine' },
          day: { to: 'date', on_error: 'null' },
        },
      },
      ROWS,
      'policies',
    );
    expect(out.map((r) => r.id)).toEqual(['1', '4']);
    expect(out[0]).toMatchObject({ Price: 2.5, qty: 4, day: '2024-05-01T00:00:00.000Z' });
    expect(result).toMatchObject({ rows_read: 4, rows_written: 2, rows_skipped: 1, rows_quarantined: 1 });
    // Row 3 broke a skip rule and a quarantine rule: quarantined, kept as it was read, with both errors.
    expect(quarantined).toEqual([
      {
        line: 3,
        record: ROWS[2],
        errors: [
          { field: 'qty', message: 'not an integer (to int)' },
          { field: 'day', message: 'not a calendar date (to date)' },
        ],
      },
    ]);
  });

  it('fails on a fail policy naming the file, line, field and value, and leaves no output', async () => {
    const err = await failure(run({ convert: { qty: { to: 'int', on_error: 'fail' } } }, ROWS, 'fail'));
    expect(err.name).toBe('DataInputError');
    expect(err.message).toMatch(/fail\.in\.ndjson, line 3: field "qty" = "two": not an integer \(to int\)/);
    await expect(readFile(join(dir, 'fail.out.ndjson'))).rejects.toThrow(/ENOENT/);
    const bad = await failure(
      run({ compute: { t: { $multiply: ['$Price', 2] } } }, ROWS.slice(0, 1), 'computefail'),
    );
    expect(bad.message).toContain('line 1: field "t": $multiply expression must resolve to array of number');
  });

  it('refuses at enqueue an expression that is not one, naming the field', async () => {
    const d = await realpath(dir);
    const base = { input: join(d, 'in.ndjson'), output: join(d, 'out.ndjson') };
    const problems = async (params: Record<string, unknown>) => {
      const r = await parseInput(dataTransform, { ...base, ...params }, { d }, 'enqueue');
      return r.ok ? [] : r.problems;
    };
    expect(await problems({ compute: { total: { $multiply: ['$price', '$qty'] } } })).toEqual([]);
    expect(await problems({ compute: { total: { $mul: ['$price', 2] } } })).toEqual([
      expect.stringMatching(
        /^params\.compute\.total = .* is not allowed: not a valid MongoDB aggregation expression: unknown operator \$mul /,
      ),
    ]);
    expect(
      (await problems({ compute: { f: { $function: { body: 'x', args: [], lang: 'js' } } } }))[0],
    ).toContain('params.compute.f = ');
    expect(
      (await problems({ compute: { f: { $function: { body: 'x', args: [], lang: 'js' } } } }))[0],
    ).toContain('$function runs code and is not allowed');
    expect((await problems({ compute: { g: { $add: [1, 2], $sum: 1 } } }))[0]).toContain(
      'an operator object holds exactly one $operator',
    );
    expect((await problems({ compute: { h: { $add: [1, { $nope: 2 }] } } }))[0]).toContain(
      'at .$add[1]: unknown operator $nope',
    );
    expect(await problems({ convert: { a: { to: 'int', on_error: 'quarantine' } } })).toEqual([
      'params.quarantine = (missing) is not allowed: is required: convert.a.on_error is "quarantine"',
    ]);
    expect((await problems({ convert: { a: 'integer' } }))[0]).toMatch(
      /^params\.convert\.a = "integer" is not allowed/,
    );
  });
});
