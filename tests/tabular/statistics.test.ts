import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseInput } from '../../src/jobs/defineJobType.js';
import { writeRecords } from '../../src/jobs/tabular/records.js';
import statisticalAnalysis from '../../src/jobs/tabular/statisticalAnalysis.js';
import { computeStatistics, type FieldStatistics } from '../../src/jobs/tabular/lib/statistics.js';
import { waitUntil } from '../helpers/waitFor.js';
import { dataDir, jobContext, numpyFigures, syntheticRecords, type NumpyFigures } from './analysisHelpers.js';

const QUANTILES = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1];
const BINS = 13;
const N = 12_000;

let dir: string;
let cleanup: () => Promise<void>;
let source: string;
let numpy: NumpyFigures;
const savedEnv = process.env.JOBD_DATA_DIRS;

beforeAll(async () => {
  ({ dir, cleanup } = await dataDir('stats'));
  source = join(dir, 'records.ndjson');
  await writeRecords(source, syntheticRecords(N));
  numpy = await numpyFigures(source, QUANTILES, BINS);
});
afterAll(async () => {
  await cleanup();
});
afterEach(() => {
  if (savedEnv === undefined) delete process.env.JOBD_DATA_DIRS;
  else process.env.JOBD_DATA_DIRS = savedEnv;
});

const ctx = () => ({ signal: new AbortController().signal, progress: () => {}, log: () => {} });

function close(actual: number | null, expected: number | null, what: string): void {
  if (expected === null || actual === null) {
    expect(actual, what).toBe(expected);
    return;
  }
  const scale = Math.max(Math.abs(expected), Number.MIN_VALUE);
  expect(Math.abs(actual - expected) / scale, `${what}: ${actual} vs numpy ${expected}`).toBeLessThanOrEqual(
    1e-9,
  );
}

function agreesWithNumpy(fields: Record<string, FieldStatistics>): void {
  expect(Object.keys(fields).sort()).toEqual(Object.keys(numpy).sort());
  for (const [name, np] of Object.entries(numpy)) {
    const s = fields[name]!;
    expect(s.count, name).toBe(np.count);
    for (const k of [
      'sum',
      'mean',
      'variance_sample',
      'variance_population',
      'std_sample',
      'std_population',
    ]) {
      close(s[k as keyof FieldStatistics] as number, np[k] as number, `${name}.${k}`);
    }
    // Order statistics are values of the data (or numpy's interpolation between two): equal, or within
    // one rounding of the interpolation.
    expect([s.min, s.max], name).toEqual([np.min, np.max]);
    close(s.median, np.median as number, `${name}.median`);
    s.quantiles.forEach((q, i) => close(q.value, np.quantiles[i]!, `${name}.quantile(${q.q})`));
    expect(s.histogram!.counts, `${name}.histogram`).toEqual(np.histogram.counts);
    s.histogram!.edges.forEach((e, i) => close(e, np.histogram.edges[i]!, `${name}.edge[${i}]`));
  }
}

describe('statistical_analysis', () => {
  it('agrees with numpy to 1e-9 relative, with values in memory', async () => {
    const r = await computeStatistics(
      { source, quantiles: QUANTILES, bins: BINS, memoryValues: 1 << 24, maxFields: 100 },
      ctx(),
    );
    expect(r.records).toBe(N);
    expect(r.spilled).toEqual([]);
    agreesWithNumpy(r.fields);
    // The text field is not described; the gappy field counts what it skipped.
    expect(r.fields.label).toBeUndefined();
    const gappy = r.fields.gappy!;
    expect(gappy.missing + gappy.non_numeric + gappy.count).toBe(N);
    expect(gappy.non_numeric).toBeGreaterThan(0);
    expect(gappy.missing).toBeGreaterThan(0);
  });

  it('the offset field defeats the textbook one-pass variance (so the test above can fail)', () => {
    let s = 0;
    let s2 = 0;
    const offset = syntheticRecords(N).map((r) => r.offset as number);
    for (const v of offset) {
      s += v;
      s2 += v * v;
    }
    const naive = (s2 - (s * s) / N) / (N - 1);
    const truth = numpy.offset!.variance_sample as number;
    expect(Math.abs(naive - truth) / truth).toBeGreaterThan(1e-3);
  });

  it('agrees with numpy when the values spill to disk, and removes its spill files', async () => {
    const spillDir = join(dir, 'spill');
    await mkdir(spillDir);
    const r = await computeStatistics(
      { source, quantiles: QUANTILES, bins: BINS, memoryValues: 8192, maxFields: 100, spillDir },
      ctx(),
    );
    expect(r.spilled.sort()).toEqual(['clustered', 'constant', 'gappy', 'ints', 'normal', 'offset']);
    agreesWithNumpy(r.fields);
    expect(await readdir(spillDir)).toEqual([]);
  });

  it('gives the same figures spilled as in memory when a field ends with whole chunks not yet spilled', async () => {
    // One field: chunks of 8192 values spill when more than 16384 are held, so the 4th chunk and the
    // tail are still in memory at the end.
    const path = join(dir, 'one.ndjson');
    await writeRecords(
      path,
      syntheticRecords(4 * 8192 + 100, 11).map((r) => ({ x: r.normal })),
    );
    const opts = { source: path, quantiles: QUANTILES, bins: BINS, maxFields: 10 };
    const held = await computeStatistics({ ...opts, memoryValues: 1 << 20 }, ctx());
    const spilled = await computeStatistics({ ...opts, memoryValues: 2 * 8192 }, ctx());
    expect(spilled.spilled).toEqual(['x']);
    expect(spilled.fields.x).toEqual(held.fields.x);
  });

  it('runs as a job type: listed fields, a JSON file written, a bad parameter refused by name', async () => {
    process.env.JOBD_DATA_DIRS = JSON.stringify({ tables: dir });
    const output = join(dir, 'stats.json');
    const progressed: number[] = [];
    const params = { source, fields: ['normal', 'absent'], quantiles: [0.5], bins: 4, output };
    const result = (await statisticalAnalysis.handler(params, jobContext(progressed))) as {
      fields: Record<string, FieldStatistics>;
      output: string;
    };
    expect(Object.keys(result.fields)).toEqual(['normal', 'absent']);
    expect(result.fields.absent).toMatchObject({ count: 0, missing: N, mean: null, histogram: null });
    close(result.fields.normal!.mean, numpy.normal!.mean as number, 'normal.mean');
    expect(JSON.parse(await readFile(output, 'utf8'))).toEqual(result);
    expect(progressed.at(-1)).toBe(100);

    const bad = await parseInput(
      statisticalAnalysis,
      { source, quantiles: [1.5] },
      { tables: dir },
      'enqueue',
    );
    expect(bad).toMatchObject({ ok: false });
    expect((bad as { problems: string[] }).problems.join('\n')).toMatch(
      /params\.quantiles\.0 = 1\.5 is not allowed/,
    );
  });

  it('names the file and line of a record that is not JSON', async () => {
    const broken = join(dir, 'broken.ndjson');
    await writeFile(broken, '{"a":1}\n{"a":2}\nnot json\n');
    await expect(
      computeStatistics({ source: broken, quantiles: [], bins: 1, memoryValues: 8192, maxFields: 10 }, ctx()),
    ).rejects.toThrow(/broken\.ndjson, line 3: not JSON/);
  });

  it('a run killed while its values are spilled leaves temporaries that the next run removes', async () => {
    const out = join(dir, 'crash');
    await mkdir(out);
    const output = join(out, 'stats.json');
    const params = { source, quantiles: QUANTILES, bins: BINS, output, memory_values: 8192 };
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('../fixtures/tabular/statsChild.ts', import.meta.url)),
        JSON.stringify(params),
      ],
      {
        env: { ...process.env, JOBD_DATA_DIRS: JSON.stringify({ tables: dir }) },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let said = '';
    child.stdout!.on('data', (b: Buffer) => (said += b.toString()));
    const exited = once(child, 'exit');
    await waitUntil(() => said.includes('"holding"') || child.exitCode !== null, {
      what: 'the child to hold mid-run',
      timeoutMs: 60_000,
    });
    expect(said).toContain('"holding"');
    // The spill files are on disk, in a temporary beside the output named after the child's pid.
    const [temp] = (await readdir(out)).filter((n) => n.startsWith(`.stats.json.jobd-tmp-${child.pid}-`));
    expect(temp).toBeDefined();
    const [spill] = await readdir(join(out, temp!));
    expect((await readdir(join(out, temp!, spill!))).length).toBeGreaterThan(0);
    child.kill('SIGKILL');
    await exited;
    expect(await readdir(out)).toEqual([temp]);

    process.env.JOBD_DATA_DIRS = JSON.stringify({ tables: dir });
    const result = (await statisticalAnalysis.handler(params, jobContext())) as {
      fields: Record<string, FieldStatistics>;
    };
    agreesWithNumpy(result.fields);
    expect(await readdir(out)).toEqual(['stats.json']);
  });
});
