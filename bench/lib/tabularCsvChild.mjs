// One measured pass over a CSV file, in a process of its own so that its peak RSS is its own:
//   node bench/lib/tabularCsvChild.mjs ingest|csv-parse <file.csv> [<out.ndjson>]
// Prints one JSON line: { mode, records, seconds, cpu_seconds, peak_rss_mb } (CPU time tells more than
// wall time on a loaded machine). `ingest` runs file_ingestion's core
// from dist/ (npm run build first); `csv-parse` is a plain csv-parse pass with the same options.
import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';

const [mode, file, out] = process.argv.slice(2);
const started = process.hrtime.bigint();
let records = 0;
if (mode === 'ingest') {
  const { fileIngest } = await import('../../dist/jobs/tabular/lib/fileIngest.js');
  const ctx = { signal: new AbortController().signal, progress: () => {}, log: () => {} };
  const r = await fileIngest(
    {
      source: file,
      output: out,
      header: true,
      types: { id: 'int', amount: 'float', ok: 'bool' },
      bad_rows: 'skip',
    },
    ctx,
  );
  records = r.records;
} else if (mode === 'csv-parse') {
  const parser = createReadStream(file, { highWaterMark: 1 << 20 }).pipe(
    parse({ columns: true, bom: true, skip_empty_lines: true }),
  );
  for await (const _ of parser) records += 1;
} else {
  process.stderr.write(`unknown mode ${mode}: ingest or csv-parse\n`);
  process.exit(2);
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
const usage = process.resourceUsage();
const peak = usage.maxRSS / 1024;
const cpuSeconds = (usage.userCPUTime + usage.systemCPUTime) / 1e6;
process.stdout.write(
  `${JSON.stringify({ mode, records, seconds, cpu_seconds: cpuSeconds, peak_rss_mb: Math.round(peak * 10) / 10 })}\n`,
);
