/**
 * statistical_analysis → report_generation as a workflow submitted with `jobctl workflow submit` to a
 * real daemon: the report job sees the statistics job's result through its dependencies, and prints a
 * PDF with the chromium the settings name.
 */
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRecords } from '../../src/jobs/tabular/records.js';
import { CHROMIUM } from '../helpers/browser.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonSettings,
} from '../helpers/daemonProcess.js';
import { submitWorkflowAndSettle, syntheticRecords } from './analysisHelpers.js';

let t: TestDb;
let base: string;
let tables: string;
let settings: DaemonSettings;

beforeAll(async () => {
  t = await openTestDb('tabular_analysis');
  base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-analysis-wf-')));
  tables = join(base, 'tables');
  mkdirSync(tables);
  await writeRecords(join(tables, 'records.ndjson'), syntheticRecords(500));
  settings = writeDaemonSettings({
    mongoUri: t.uri,
    database: t.dbName,
    dir: join(base, 'daemon'),
    worker: { leaseMs: 30_000, killGraceMs: 5_000 },
    extra: { dataDirs: { tables }, programs: { chromium: { path: CHROMIUM } } },
  });
  await startDaemonProcess(settings, { timeoutMs: 90_000 });
}, 120_000);

afterAll(async () => {
  await killAllDaemons();
  await t?.close();
  rmSync(base, { recursive: true, force: true });
});

describe('analysis workflow', () => {
  it('runs statistical_analysis then report_generation, the report showing the statistics result', async () => {
    const file = join(base, 'workflow.json');
    writeFileSync(
      file,
      JSON.stringify({
        name: 'describe-and-report',
        jobs: [
          {
            key: 'describe',
            type: 'statistical_analysis',
            params: { source: join(tables, 'records.ndjson'), fields: ['normal', 'ints'], bins: 8 },
          },
          {
            key: 'report',
            type: 'report_generation',
            dependsOn: ['describe'],
            params: {
              title: 'Workflow report',
              output: join(tables, 'report.html'),
              pdf: join(tables, 'report.pdf'),
            },
          },
        ],
      }),
    );
    const { keys: jobs, docs: done } = await submitWorkflowAndSettle(t.db, file, settings.file, 2, 150_000);
    const byKey = Object.fromEntries(
      done.map((d) => [String(d._id) === jobs.describe ? 'describe' : 'report', d]),
    );
    for (const [k, d] of Object.entries(byKey))
      expect(d.state, `${k}: ${JSON.stringify(d.errors)}`).toBe('completed');
    expect(byKey.describe!.result).toMatchObject({ records: 500, fields: { normal: { count: 500 } } });
    expect(byKey.report!.result).toMatchObject({ sections: 1, charts: 2, pdf: join(tables, 'report.pdf') });
    const html = readFileSync(join(tables, 'report.html'), 'utf8');
    expect(html).toContain('describe: statistics of');
    expect(html.match(/<rect class="bar"/g)).toHaveLength(16);
    expect(readFileSync(join(tables, 'report.pdf')).subarray(0, 5).toString('latin1')).toBe('%PDF-');
  });
});
