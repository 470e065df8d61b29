/**
 * Tabular job benchmarks. Prints ONE JSON document on stdout (progress goes to stderr). Never part of
 * `npm test`.
 *
 *   npm run bench:tabular                          every section, CSV of 1 GB
 *   npm run bench:tabular -- --size=200MB          a smaller file (KB, MB, GB; decimal units)
 *   npm run bench:tabular -- --sections=csv        some sections only (csv, aggregation, mongo)
 *   npm run bench:tabular -- --rows=1000000        rows of the aggregation section (default 10 million)
 *   npm run bench:tabular -- --mongo-rows=100000   rows of the mongo section (default 1 million)
 *   BENCH_DIR=/somewhere npm run bench:tabular     where the files go (default: the temp dir)
 *
 * A section is a module of its own exporting `section: Section`; add it to SECTIONS below.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

export interface BenchContext {
  /** The size asked for with --size (bytes): each section scales its data from it. */
  bytes: number;
  /** A scratch folder, removed at the end. */
  dir: string;
  log(msg: string): void;
}

export interface Section {
  name: string;
  run(b: BenchContext): Promise<Record<string, unknown>>;
}

const SECTIONS: Record<string, () => Promise<Section>> = {
  csv: async () => (await import('./tabularCsv.js')).section,
  // data_aggregation on a file of --rows synthetic rows (default 10 million), beside numpy.
  aggregation: async () => {
    const { benchTabularAggregation } = await import('./tabularAggregation.js');
    return {
      name: 'aggregation',
      run: (b) => benchTabularAggregation({ rows: rowsArg(flag('rows') ?? '10000000'), dir: b.dir }),
    };
  },
  // data_aggregation in MongoDB (embedded, or BENCH_MONGODB_URI) over --mongo-rows rows (default 1 million).
  mongo: async () => (await import('./tabularMongo.js')).section,
};

function rowsArg(text: string): number {
  const rows = Number(text);
  if (!Number.isInteger(rows) || rows < 1) {
    process.stderr.write(`--rows must be a positive integer; got "${text}"\n`);
    process.exit(2);
  }
  return rows;
}

function sizeArg(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(KB|MB|GB)?$/i.exec(text.trim());
  if (!m) {
    process.stderr.write(`--size must be a size like 1GB, 200MB or 500000KB; got "${text}"\n`);
    process.exit(2);
  }
  const unit = { KB: 1e3, MB: 1e6, GB: 1e9 }[(m[2] ?? 'MB').toUpperCase() as 'KB' | 'MB' | 'GB'];
  return Math.round(Number(m[1]) * unit);
}

const flag = (name: string): string | undefined =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);

async function main(): Promise<void> {
  const bytes = sizeArg(flag('size') ?? '1GB');
  const wanted = (flag('sections') ?? Object.keys(SECTIONS).join(',')).split(',');
  const unknown = wanted.filter((s) => !(s in SECTIONS));
  if (unknown.length) {
    process.stderr.write(
      `--sections: unknown ${unknown.join(', ')} (known: ${Object.keys(SECTIONS).join(', ')})\n`,
    );
    process.exit(2);
  }
  const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'jobd-bench-tabular-'));
  const log = (msg: string): void => void process.stderr.write(`[bench:tabular] ${msg}\n`);
  const results: Record<string, unknown> = {};
  try {
    for (const name of wanted) {
      const s = await SECTIONS[name]!();
      log(`section ${s.name}`);
      results[s.name] = await s.run({ bytes, dir, log });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const doc = {
    bench: 'tabular',
    size_bytes: bytes,
    machine: { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
    ...results,
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
}

await main();
