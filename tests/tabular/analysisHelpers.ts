/**
 * What the analysis tests share: a job context, a data dir, seeded synthetic records, and numpy's
 * figures for an NDJSON file (the system python3 reads the same file).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Db } from 'mongodb';
import { expect } from 'vitest';
import type { JobContext, JobDoc } from '../../src/types.js';
import { JOBCTL_BIN, runCli } from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import { mulberry32 } from '../helpers/random.js';

export function jobContext(progressed: number[] = []): JobContext {
  return {
    jobId: 'j1',
    type: 't',
    attempt: 1,
    progress: (p) => progressed.push(p),
    signal: new AbortController().signal,
    logger: { info: () => {}, warn: () => {}, error: () => {} },
    paths: { log: '/dev/null' },
    spawn: () => {
      throw new Error('not spawned in these tests');
    },
    waitForChildren: () => {
      throw new Error('not waited for in these tests');
    },
  };
}

/** A fresh data dir (realpath, as the daemon resolves them); `cleanup` removes it. */
export async function dataDir(label: string): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await realpath(await mkdtemp(join(tmpdir(), `jobd-${label}-`)));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** mulberry32: the same records on every run. */
export const seeded = mulberry32;

/**
 * Records with: `normal` (mean 5, sd 2), `gappy` (absent, null or "n/a" in some records), `offset`
 * (1e9 plus unit noise: the textbook sum-of-squares variance loses every digit), `ints` (0..49, many
 * ties), `clustered` (nearly all within 1e-9 of 1, a few near 1e6: one bucketing pass is not enough),
 * `constant` (one value) and `label` (text only).
 */
export function syntheticRecords(n: number, seed = 7): Array<Record<string, unknown>> {
  const r = seeded(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  const out: Array<Record<string, unknown>> = [];
  for (let i = 0; i < n; i++) {
    const rec: Record<string, unknown> = {
      label: `row <${i}>`,
      normal: 5 + 2 * gauss(),
      offset: 1e9 + gauss(),
      ints: Math.floor(r() * 50),
      clustered: i % 500 === 0 ? 1e6 + r() : 1 + r() * 1e-9,
      constant: 3.25,
    };
    const g = r();
    if (g < 0.1) rec.gappy = null;
    else if (g < 0.15) rec.gappy = 'n/a';
    else if (g >= 0.2) rec.gappy = -100 + 300 * r();
    out.push(rec);
  }
  return out;
}

const NUMPY = `
import json, sys
import numpy as np
path, quantiles, bins = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
cols = {}
for line in open(path):
    if not line.strip():
        continue
    for k, v in json.loads(line).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            cols.setdefault(k, []).append(float(v))
out = {}
for k, vals in cols.items():
    a = np.array(vals, dtype=np.float64)
    counts, edges = np.histogram(a, bins=bins)
    out[k] = {
        'count': int(a.size), 'sum': float(np.sum(a)), 'mean': float(np.mean(a)),
        'variance_sample': float(np.var(a, ddof=1)) if a.size > 1 else None,
        'variance_population': float(np.var(a)),
        'std_sample': float(np.std(a, ddof=1)) if a.size > 1 else None,
        'std_population': float(np.std(a)),
        'min': float(np.min(a)), 'max': float(np.max(a)), 'median': float(np.median(a)),
        'quantiles': [float(x) for x in np.quantile(a, quantiles)],
        'histogram': {'edges': [float(e) for e in edges], 'counts': [int(c) for c in counts]},
    }
print(json.dumps(out))
`;

export type NumpyFigures = Record<
  string,
  Record<string, number | null> & { quantiles: number[]; histogram: { edges: number[]; counts: number[] } }
>;

/** numpy's figures for each numeric field of an NDJSON file. */
export async function numpyFigures(path: string, quantiles: number[], bins: number): Promise<NumpyFigures> {
  const { stdout } = await promisify(execFile)(
    'python3',
    ['-c', NUMPY, path, JSON.stringify(quantiles), String(bins)],
    { maxBuffer: 1 << 26 },
  );
  return JSON.parse(stdout) as NumpyFigures;
}

/**
 * Submits a workflow file with `jobctl workflow submit` (as an operator would) and waits until its
 * `jobs` jobs have all settled; returns the submit output and the settled job documents.
 */
export async function submitWorkflowAndSettle(
  db: Db,
  file: string,
  settingsFile: string,
  jobs: number,
  timeoutMs: number,
): Promise<{ id: string; keys: Record<string, string>; docs: JobDoc[] }> {
  const sub = await runCli(JOBCTL_BIN, ['workflow', 'submit', file, '--settings', settingsFile, '--json']);
  expect(sub.code, sub.stderr).toBe(0);
  const { id, jobs: keys } = JSON.parse(sub.stdout) as { id: string; jobs: Record<string, string> };
  const coll = db.collection<JobDoc>('jobs');
  const docs = await waitUntil(
    async () => {
      const found = await coll.find({ workflowId: id }).toArray();
      const final = found.every((d) => ['completed', 'failed', 'cancelled'].includes(d.state));
      return found.length === jobs && final ? found : undefined;
    },
    { what: `workflow ${id} to finish`, timeoutMs, intervalMs: 250 },
  );
  return { id, keys, docs };
}
