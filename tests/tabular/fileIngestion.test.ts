/**
 * file_ingestion's core on real files: each format, column types with per-field errors, and each
 * bad-row policy (fail, skip, quarantine) with its counts.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileIngest, type FileIngestInput } from '../../src/jobs/tabular/lib/fileIngest.js';
import { failure, recordingContext } from '../data/helpers.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-fileingest-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function lines(path: string): Promise<unknown[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as unknown);
}

function input(name: string, text: string, over: Partial<FileIngestInput> = {}): Promise<FileIngestInput> {
  const source = join(dir, name);
  return writeFile(source, text).then(() => ({
    source,
    output: join(dir, `${name}.out.ndjson`),
    header: true,
    bad_rows: 'fail' as const,
    ...over,
  }));
}

const TYPES = { id: 'int', price: 'float', ok: 'bool', day: 'date' } as const;

describe('file_ingestion: formats', () => {
  it('CSV with a header, quotes, a BOM, CRLF and types', async () => {
    const i = await input(
      'a.csv',
      '\uFEFFid,name,price,ok,day\r\n1,"Smith, J",2.50,yes,2024-05-01\r\n2,"say ""hi""",,0,2024-05-02T10:00:00Z\r\n',
      { types: TYPES },
    );
    const ctx = recordingContext();
    const r = await fileIngest(i, ctx);
    expect(r).toMatchObject({ format: 'csv', rows: 2, records: 2, bad_rows: 0, quarantine: null });
    expect(await lines(i.output)).toEqual([
      { id: 1, name: 'Smith, J', price: 2.5, ok: true, day: '2024-05-01T00:00:00.000Z' },
      { id: 2, name: 'say "hi"', price: null, ok: false, day: '2024-05-02T10:00:00.000Z' },
    ]);
    expect(r.bytes_read).toBe((await readFile(i.source)).length);
    expect(r.bytes_written).toBe((await readFile(i.output)).length);
    expect(ctx.progressed.at(-1)!.percent).toBe(100);
    expect(ctx.progressed.some((p) => /MB of .* MB read/.test(p.message ?? ''))).toBe(true);
  });

  it('TSV (no quoting), a custom delimiter, and a file without a header', async () => {
    const tsv = await input('b.tsv', 'a\tb\n"x\t1\n');
    await fileIngest(tsv, recordingContext());
    expect(await lines(tsv.output)).toEqual([{ a: '"x', b: '1' }]);
    const semi = await input('c.txt', '1;2\n3;4\n', { format: 'csv', delimiter: ';', header: false });
    await fileIngest(semi, recordingContext());
    expect(await lines(semi.output)).toEqual([
      { col1: '1', col2: '2' },
      { col1: '3', col2: '4' },
    ]);
    const named = await input('d.csv', 'A,B\n1,2\n', { columns: ['x', 'y'], types: { x: 'int' } });
    await fileIngest(named, recordingContext());
    expect(await lines(named.output)).toEqual([{ x: 1, y: '2' }]);
  });

  it('a JSON array (top level or at a path) and NDJSON', async () => {
    const arr = await input('e.json', '[{"id":"1","v":[1,2]},\n {"id":2,"v":null}]', {
      types: { id: 'int' },
    });
    expect((await fileIngest(arr, recordingContext())).records).toBe(2);
    expect(await lines(arr.output)).toEqual([
      { id: 1, v: [1, 2] },
      { id: 2, v: null },
    ]);
    const nested = await input('f.json', '{"meta":{},"data":{"items":[{"a":1},{"a":2},{"a":3}]}}', {
      records_path: 'data.items',
    });
    expect((await fileIngest(nested, recordingContext())).records).toBe(3);
    const obj = await input('g.json', '{"a":1}');
    expect((await failure(fileIngest(obj, recordingContext()))).message).toMatch(/not in a JSON array/);
    const broken = await input('h.json', '[{"a":1},');
    expect((await failure(fileIngest(broken, recordingContext()))).message).toMatch(
      /JSON ends early|not valid JSON/,
    );
    const nd = await input('i.ndjson', '{"a":1}\r\n\n{"a":{"b":true}}');
    expect((await fileIngest(nd, recordingContext())).records).toBe(2);
    expect(await lines(nd.output)).toEqual([{ a: 1 }, { a: { b: true } }]);
  });
});

describe('file_ingestion: bad rows', () => {
  const text = 'id,price\n1,2.5\n2,abc\n3\n4,1e3\nx,1\n';

  it('fail: the job fails at the first bad row, naming line, field and value; no output is left', async () => {
    const i = await input('bad-fail.csv', text, { types: { id: 'int', price: 'float' } });
    const e = await failure(fileIngest(i, recordingContext()));
    expect(e.name).toBe('DataInputError');
    expect(e.code).toBe('JOBD_DO_NOT_RETRY');
    expect(e.message).toContain('line 3: price: "abc" is not float');
    expect((await readdir(dir)).filter((n) => n.includes('bad-fail.csv.out'))).toEqual([]);
  });

  it('skip: bad rows are counted and left out', async () => {
    const i = await input('bad-skip.csv', text, { types: { id: 'int', price: 'float' }, bad_rows: 'skip' });
    const r = await fileIngest(i, recordingContext());
    expect(r).toMatchObject({
      rows: 5,
      records: 2,
      bad_rows: 3,
      skipped: 3,
      quarantined: 0,
      quarantine: null,
    });
    expect(r.bad_row_samples.map((s) => s.line)).toEqual([3, 4, 6]);
    expect(r.bad_row_samples[1]!.reason).toMatch(/CSV_RECORD_INCONSISTENT_COLUMNS/);
    expect(await lines(i.output)).toEqual([
      { id: 1, price: 2.5 },
      { id: 4, price: 1000 },
    ]);
  });

  it('quarantine: bad rows go to the quarantine file with line, reason and raw text', async () => {
    const q = join(dir, 'bad.quarantine.ndjson');
    const i = await input('bad-q.csv', text, {
      types: { id: 'int', price: 'float' },
      bad_rows: 'quarantine',
      quarantine: q,
    });
    const r = await fileIngest(i, recordingContext());
    expect(r).toMatchObject({ records: 2, bad_rows: 3, skipped: 0, quarantined: 3, quarantine: q });
    const bad = (await lines(q)) as Array<{ line: number; reason: string; raw: string }>;
    expect(bad.map((b) => [b.line, b.raw])).toEqual([
      [3, '2,abc'],
      [4, '3'],
      [6, 'x,1'],
    ]);
    expect(bad[0]!.reason).toBe('price: "abc" is not float: must be a decimal number (e.g. 3.25, -1e-3)');
    expect(bad[2]!.reason).toMatch(/^id: "x" is not int/);
    // NDJSON lines that are not objects are bad rows too.
    const nd = await input('bad-q.ndjson', '{"a":1}\n[1]\n{oops\n', {
      bad_rows: 'quarantine',
      quarantine: q,
    });
    const r2 = await fileIngest(nd, recordingContext());
    expect(r2).toMatchObject({ records: 1, quarantined: 2 });
    expect(((await lines(q)) as Array<{ line: number }>).map((b) => b.line)).toEqual([2, 3]);
  });

  it('past one read chunk: quoted newlines across chunk ends, bad rows in order with their lines', async () => {
    // About 300 KB: rows of two lines each (a quoted newline), so many rows straddle the 64 KB reads.
    const n = 3000;
    let text = 'id,name,price\n';
    const badLines: number[] = [];
    for (let i = 0; i < n; i++) {
      const bad = i % 499 === 7;
      // Row i's last line: the header, then two lines a row.
      if (bad) badLines.push(1 + 2 * (i + 1));
      text += `${i},"row ${i}, ${'x'.repeat(i % 90)}\nsecond line",${bad ? 'n/a' : `${i}.5`}\n`;
    }
    const q = join(dir, 'chunks.quarantine.ndjson');
    const i = await input('chunks.csv', text, {
      types: { id: 'int', price: 'float' },
      bad_rows: 'quarantine',
      quarantine: q,
    });
    const r = await fileIngest(i, recordingContext());
    expect(r).toMatchObject({ rows: n, records: n - badLines.length, quarantined: badLines.length });
    const out = (await lines(i.output)) as Array<{ id: number; name: string; price: number }>;
    expect(out.map((o) => o.id)).toEqual([...Array(n).keys()].filter((k) => k % 499 !== 7));
    expect(out[1234]).toEqual({ id: 1237, name: `row 1237, ${'x'.repeat(67)}\nsecond line`, price: 1237.5 });
    const bad = (await lines(q)) as Array<{ line: number; raw: string }>;
    expect(bad.map((b) => b.line)).toEqual(badLines);
    expect(bad[1]!.raw).toBe(`506,"row 506, ${'x'.repeat(56)}\nsecond line",n/a`);
  });
});
