/**
 * file_ingestion streams: a generated CSV ingests in a process whose heap is capped far below what
 * the file's records would take in memory (a run that held them would die of it), and its peak RSS is
 * reported and bounded. The 1 GB figure comes from bench/tabular.ts. Runs the compiled dist/.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCsv } from '../../bench/tabularCsv.js';

const CHILD = resolve(import.meta.dirname, '../../bench/lib/tabularCsvChild.mjs');
// Holding this file's 460k records takes about 100 MB of heap (measured: parse them into an array, gc,
// heapUsed), three times the cap. The cap leaves V8 room to work: at 16 MB, a starved machine's
// slow concurrent marking ended runs with "heap out of memory" though the live set stayed flat.
const HEAP_MB = 32;
const CSV_BYTES = 24e6;
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-ingest-mem-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('file_ingestion memory', () => {
  it(`a 24 MB CSV ingests under a ${HEAP_MB} MB heap`, { timeout: 240_000 }, async () => {
    const csv = join(dir, 'big.csv');
    const rows = await generateCsv(csv, CSV_BYTES);
    const { size } = await stat(csv);
    const figures = await new Promise<{ records: number; peak_rss_mb: number }>((res, rej) => {
      const p = spawn(
        process.execPath,
        [`--max-old-space-size=${HEAP_MB}`, CHILD, 'ingest', csv, join(dir, 'big.ndjson')],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      let err = '';
      p.stdout.on('data', (c: Buffer) => (out += String(c)));
      p.stderr.on('data', (c: Buffer) => (err += String(c)));
      p.once('close', (code, signal) =>
        code === 0
          ? res(JSON.parse(out))
          : rej(new Error(`exit ${code ?? `by ${signal}`}: ${err.slice(-2000)}`)),
      );
    });
    expect(figures.records).toBe(rows);
    // The heap cap is the proof (its records would take several times the file); RSS adds the runtime.
    expect(figures.peak_rss_mb).toBeLessThan(150);
    expect(size).toBeGreaterThan(CSV_BYTES - 1e6);
    process.stderr.write(
      `file_ingestion: ${(size / 1e6).toFixed(1)} MB CSV, peak RSS ${figures.peak_rss_mb} MB\n`,
    );
  });
});
