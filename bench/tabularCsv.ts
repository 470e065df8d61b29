/**
 * The CSV ingestion section of bench/tabular.ts: a generated CSV of the requested size, read by
 * file_ingestion's core (typed columns, NDJSON out), by a plain csv-parse pass and by `wc -l`, in the
 * same run, each in a process of its own (peak RSS per process).
 */
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import { join, resolve } from 'node:path';
import type { BenchContext, Section } from './tabular.js';

const CHILD = resolve(import.meta.dirname, 'lib/tabularCsvChild.mjs');
const CITIES = ['Lyon', 'Graz', 'Porto', 'Turku', 'Gent', 'Brno', 'Cork', 'Bari'];

/** Writes a CSV of about `bytes` (id,name,city,amount,ok,day): returns its rows. */
export async function generateCsv(path: string, bytes: number): Promise<number> {
  const out = createWriteStream(path);
  let written = 0;
  let rows = 0;
  const header = 'id,name,city,amount,ok,day\n';
  out.write(header);
  written += header.length;
  while (written < bytes) {
    let chunk = '';
    for (let i = 0; i < 10_000; i++) {
      rows += 1;
      const amount = ((rows * 7919) % 1_000_000) / 100;
      chunk += `${rows},"Customer ${rows % 9973}",${CITIES[rows % 8]},${amount},${rows % 2 ? 'true' : 'false'},2024-${String((rows % 12) + 1).padStart(2, '0')}-15\n`;
    }
    written += chunk.length;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return rows;
}

interface ChildFigures {
  records: number;
  seconds: number;
  cpu_seconds: number;
  peak_rss_mb: number;
}

function runChild(mode: string, file: string, out?: string): Promise<ChildFigures> {
  return new Promise((res, rej) => {
    const p = spawn(process.execPath, [CHILD, mode, file, ...(out ? [out] : [])], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    p.stdout.on('data', (c: Buffer) => (text += String(c)));
    p.once('error', rej);
    p.once('close', (code) =>
      code === 0 ? res(JSON.parse(text) as ChildFigures) : rej(new Error(`${mode} pass exited ${code}`)),
    );
  });
}

function wcLines(file: string): Promise<{ lines: number; seconds: number }> {
  return new Promise((res, rej) => {
    const started = process.hrtime.bigint();
    const p = spawn('wc', ['-l', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (c: Buffer) => (text += String(c)));
    p.once('error', rej);
    p.once('close', (code) => {
      if (code !== 0) return rej(new Error(`wc -l exited ${code}`));
      res({
        lines: Number(text.trim().split(/\s+/)[0]),
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      });
    });
  });
}

export const section: Section = {
  name: 'csv_ingestion',
  async run(b: BenchContext) {
    const csv = join(b.dir, 'bench.csv');
    const out = join(b.dir, 'bench.ndjson');
    b.log(`generating a CSV of ${(b.bytes / 1e6).toFixed(0)} MB`);
    const rows = await generateCsv(csv, b.bytes);
    const { size } = await stat(csv);
    const mb = size / 1e6;
    b.log('wc -l');
    const wc = await wcLines(csv);
    b.log('plain csv-parse pass');
    const plain = await runChild('csv-parse', csv);
    b.log('file_ingestion core');
    const ingest = await runChild('ingest', csv, out);
    const outBytes = (await stat(out)).size;
    await rm(out, { force: true });
    await rm(csv, { force: true });
    if (ingest.records !== rows || plain.records !== rows || wc.lines !== rows + 1) {
      throw new Error(
        `row counts disagree: generated ${rows}, ingest ${ingest.records}, csv-parse ${plain.records}, wc ${wc.lines}`,
      );
    }
    const r = (n: number): number => Math.round(n * 10) / 10;
    return {
      file_mb: r(mb),
      rows,
      file_ingestion: {
        mb_per_s: r(mb / ingest.seconds),
        mb_per_cpu_s: r(mb / ingest.cpu_seconds),
        seconds: r(ingest.seconds),
        peak_rss_mb: ingest.peak_rss_mb,
        output_mb: r(outBytes / 1e6),
      },
      csv_parse: {
        mb_per_s: r(mb / plain.seconds),
        mb_per_cpu_s: r(mb / plain.cpu_seconds),
        seconds: r(plain.seconds),
        peak_rss_mb: plain.peak_rss_mb,
      },
      wc_l: { mb_per_s: r(mb / wc.seconds), seconds: r(wc.seconds) },
      /** file_ingestion's throughput as a share of the plain csv-parse pass (1.0: as fast). */
      ratio_to_csv_parse: Math.round((plain.seconds / ingest.seconds) * 100) / 100,
      /** The same by CPU time. */
      cpu_ratio_to_csv_parse: Math.round((plain.cpu_seconds / ingest.cpu_seconds) * 100) / 100,
    };
  },
};
