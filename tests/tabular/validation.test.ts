/** record_validation's core on a real file: invalid rows counted per rule and written with their errors; bad schemas refused at enqueue. */
import { readFile, realpath, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInput } from '../../src/jobs/defineJobType.js';
import recordValidation from '../../src/jobs/tabular/recordValidation.js';
import { validateRecords } from '../../src/jobs/tabular/lib/validateRecords.js';
import { recordingContext, tempDir } from '../data/helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('validate'));
  dir = await realpath(dir);
});
afterAll(() => cleanup());

const SCHEMA = {
  type: 'object',
  required: ['id', 'price'],
  properties: {
    id: { type: 'integer', minimum: 1 },
    price: { type: 'number', minimum: 0, maximum: 1000 },
    sku: { type: 'string', pattern: '^[A-Z]{3}-\\d+$' },
    status: { enum: ['open', 'paid'] },
  },
};

const read = async (p: string) =>
  (await readFile(p, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('record_validation', () => {
  it('writes valid and invalid rows apart and counts invalid rows per rule', async () => {
    const rows = [
      { id: 1, price: 10, sku: 'ABC-1', status: 'open' },
      { id: 2, price: -1, sku: 'abc-2', status: 'paid' }, // minimum, pattern
      { id: 0, sku: 'ABC-3' }, // minimum (id), required (price)
      { id: 'x', price: 2000, status: 'lost' }, // type, maximum, enum
      { id: 5, price: 5 },
      { price: -3, status: 'gone' }, // required (id), minimum, enum
    ];
    const input = join(dir, 'rows.ndjson');
    await writeFile(input, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const output = join(dir, 'valid.ndjson');
    const invalid = join(dir, 'invalid.ndjson');
    const r = await validateRecords({ input, output, invalid, schema: SCHEMA }, recordingContext());
    expect(r).toEqual({
      rows: 6,
      valid: 2,
      invalid: 4,
      other_rules_rows: 0,
      rules: [
        { keyword: 'minimum', path: '/price', rows: 2 },
        { keyword: 'enum', path: '/status', rows: 2 },
        { keyword: 'minimum', path: '/id', rows: 1 },
        { keyword: 'required', path: '/id', rows: 1 },
        { keyword: 'type', path: '/id', rows: 1 },
        { keyword: 'maximum', path: '/price', rows: 1 },
        { keyword: 'required', path: '/price', rows: 1 },
        { keyword: 'pattern', path: '/sku', rows: 1 },
      ],
    });
    expect(await read(output)).toEqual([rows[0], rows[4]]);
    const bad = await read(invalid);
    expect(bad.map((b) => b.line)).toEqual([2, 3, 4, 6]);
    expect(bad[0]).toEqual({
      line: 2,
      record: rows[1],
      errors: [
        { keyword: 'minimum', path: '/price', message: 'must be >= 0' },
        { keyword: 'pattern', path: '/sku', message: 'must match pattern "^[A-Z]{3}-\\d+$"' },
      ],
    });
  });

  it('refuses at enqueue a schema that is not a valid JSON Schema, naming the field and the reason', async () => {
    const base = {
      input: join(dir, 'in.ndjson'),
      output: join(dir, 'ok.ndjson'),
      invalid_output: join(dir, 'bad.ndjson'),
    };
    const problems = async (schema: unknown) => {
      const r = await parseInput(recordValidation, { ...base, schema }, { d: dir }, 'enqueue');
      return r.ok ? [] : r.problems;
    };
    expect(await problems(SCHEMA)).toEqual([]);
    expect(await problems({ properties: { price: { minimun: 0 } } })).toEqual([
      expect.stringMatching(
        /^params\.schema = .* is not allowed: not a valid JSON Schema: strict mode: unknown keyword: "minimun"/,
      ),
    ]);
    expect((await problems({ properties: { id: { type: 'integr' } } }))[0]).toContain(
      'not a valid JSON Schema: schema is invalid: data/properties/id/type must be equal to one of the allowed values',
    );
    expect((await problems({ properties: { sku: { pattern: '([A-Z' } } }))[0]).toContain(
      'Invalid regular expression',
    );
    expect((await problems({ properties: { m: { format: 'emial' } } }))[0]).toContain(
      'unknown format "emial"',
    );
    expect((await problems([1]))[0]).toContain('must be a JSON Schema object');
  });
});
