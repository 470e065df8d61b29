/**
 * What the tabular job types refuse at enqueue where a mistake would lose data or leave the user
 * guessing: a file written over a file the job reads, and conversions that are not one, each message
 * naming the field, the value and what is allowed.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInput } from '../../src/jobs/defineJobType.js';
import dataTransform from '../../src/jobs/tabular/dataTransform.js';
import fileIngestion from '../../src/jobs/tabular/fileIngestion.js';
import reportGeneration from '../../src/jobs/tabular/reportGeneration.js';
import statisticalAnalysis from '../../src/jobs/tabular/statisticalAnalysis.js';
import { tempDir } from '../data/helpers.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir('tab-params'));
  await writeFile(join(dir, 'in.csv'), 'a\n1\n');
  await writeFile(join(dir, 'in.ndjson'), '{"a":1}\n');
  await writeFile(join(dir, 'stats.json'), '{}');
});
afterAll(() => cleanup());

async function problems(def: Parameters<typeof parseInput>[0], params: unknown): Promise<string[]> {
  const r = await parseInput(def, params, { t: dir }, 'enqueue');
  return r.ok ? [] : r.problems;
}

describe('tabular params', () => {
  it('refuses a file written over a file the job reads or writes', async () => {
    const p = (name: string) => join(dir, name);
    expect(await problems(fileIngestion, { source: p('in.csv'), output: p('in.csv') })).toEqual([
      `params.output = "${p('in.csv')}" is not allowed: is the same file as source: give another path`,
    ]);
    expect(
      await problems(fileIngestion, {
        source: p('in.csv'),
        output: p('o.ndjson'),
        bad_rows: 'quarantine',
        quarantine: p('o.ndjson'),
      }),
    ).toEqual([
      `params.quarantine = "${p('o.ndjson')}" is not allowed: is the same file as output: give another path`,
    ]);
    expect(await problems(statisticalAnalysis, { source: p('in.ndjson'), output: p('in.ndjson') })).toEqual([
      `params.output = "${p('in.ndjson')}" is not allowed: is the same file as source: give another path`,
    ]);
    // A report may show one file twice, but writes over none of the files it reads, nor its HTML as PDF.
    const tables = [
      { path: p('in.ndjson') },
      { path: p('in.ndjson'), chart: { type: 'bar', x: 'a', y: 'a' } },
    ];
    expect(await problems(reportGeneration, { output: p('r.html'), tables })).toEqual([]);
    expect(
      await problems(reportGeneration, {
        output: p('stats.json'),
        pdf: p('in.ndjson'),
        statistics: [p('stats.json')],
        tables,
      }),
    ).toEqual([
      `params.output = "${p('stats.json')}" is not allowed: is the same file as statistics.0: give another path`,
      `params.pdf = "${p('in.ndjson')}" is not allowed: is the same file as tables.1.path: give another path`,
    ]);
    expect(await problems(reportGeneration, { output: p('r.html'), pdf: p('r.html'), tables })).toEqual([
      `params.pdf = "${p('r.html')}" is not allowed: is the same file as output: give another path`,
    ]);
  });

  it('names what is wrong in a conversion and what is allowed', async () => {
    const io = { input: join(dir, 'in.ndjson'), output: join(dir, 'o.ndjson') };
    const of = async (c: unknown) => problems(dataTransform, { ...io, convert: { a: c } });
    const shapes =
      'must be one of int, float, bool, date, string, or { "to": one of those, "on_error", "format", "epoch_unit" }';
    expect(await of('decimal')).toEqual([`params.convert.a = "decimal" is not allowed: ${shapes}`]);
    expect(await of(5)).toEqual([`params.convert.a = 5 is not allowed: ${shapes}`]);
    expect(await of({ to: 'decimal' })).toEqual([
      'params.convert.a = {"to":"decimal"} is not allowed: to: must be one of int, float, bool, date, string',
    ]);
    expect(await of({ to: 'int', on_error: 'explode' })).toEqual([
      'params.convert.a = {"to":"int","on_error":"explode"} is not allowed: on_error: must be one of fail, null, skip, quarantine',
    ]);
    expect(await of({ to: 'date', format: 'epoch_s', on_error: 'null' })).toEqual([]);
  });
});
