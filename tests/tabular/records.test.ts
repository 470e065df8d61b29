import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRecords, RecordLineError, RecordWriter, writeRecords } from '../../src/jobs/tabular/records.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-records-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function all(path: string, start?: number) {
  const out = [];
  for await (const r of readRecords(path, { start })) out.push(r);
  return out;
}

describe('NDJSON records', () => {
  it('round-trips records, keeping JSON types, with line numbers and resume offsets', async () => {
    const path = join(dir, 'a.ndjson');
    const records = [{ a: 1, b: 'x' }, { a: 2.5, b: null, c: [1, { d: true }] }, { é: 'ü' }];
    expect(await writeRecords(path, records)).toBe(3);
    const read = await all(path);
    expect(read.map((r) => r.record)).toEqual(records);
    expect(read.map((r) => r.line)).toEqual([1, 2, 3]);
    const text = await readFile(path);
    expect(read[2]!.end).toBe(text.length);
    // Resuming from the end of the first record yields the rest.
    expect((await all(path, read[0]!.end)).map((r) => r.record)).toEqual(records.slice(1));
  });

  it('reads a last line without a newline and skips blank lines', async () => {
    const path = join(dir, 'b.ndjson');
    await writeFile(path, '{"a":1}\n\n  \n{"a":2}');
    expect((await all(path)).map((r) => [r.line, r.record])).toEqual([
      [1, { a: 1 }],
      [4, { a: 2 }],
    ]);
  });

  it('names the file and line of a line that is not a JSON object', async () => {
    const path = join(dir, 'c.ndjson');
    await writeFile(path, '{"a":1}\n[1,2]\n');
    await expect(all(path)).rejects.toThrow(RecordLineError);
    await expect(all(path)).rejects.toThrow(/c\.ndjson, line 2: not a JSON object/);
    await writeFile(path, '{"a":1}\n{"a":\n');
    await expect(all(path)).rejects.toThrow(/line 2: not JSON/);
  });

  it('leaves no file and no temporary when a write is aborted', async () => {
    const path = join(dir, 'd.ndjson');
    const w = new RecordWriter(path);
    await w.write({ a: 1 });
    await w.abort();
    expect((await readdir(dir)).filter((n) => n.includes('d.ndjson'))).toEqual([]);
    async function* failing() {
      yield { a: 1 };
      throw new Error('source broke');
    }
    await expect(writeRecords(path, failing())).rejects.toThrow('source broke');
    expect((await readdir(dir)).filter((n) => n.includes('d.ndjson'))).toEqual([]);
  });

  it('leaves no temporary when many writers are aborted while their files are still being opened', async () => {
    // A write stream opens its file on the thread pool: abort must wait for that open before removing.
    const sub = await mkdtemp(join(dir, 'aborts-'));
    await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const w = new RecordWriter(join(sub, `f${i}.ndjson`));
        await w.write({ i });
        await w.abort();
      }),
    );
    expect(await readdir(sub)).toEqual([]);
  });
});
