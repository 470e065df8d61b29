import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeRecords } from '../../src/jobs/tabular/records.js';
import reportGeneration from '../../src/jobs/tabular/reportGeneration.js';
import statisticalAnalysis from '../../src/jobs/tabular/statisticalAnalysis.js';
import { CHROMIUM, launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { dataDir, jobContext, syntheticRecords } from './analysisHelpers.js';

/** Screenshots of the reports, kept after the run (gitignored). */
const ARTIFACTS = resolve('test-artifacts/report');

const BINS = 12;
const HOSTILE = [
  '<script>document.title="pwned"</script>',
  '<img src="http://127.0.0.1:9/leak.png">',
  '"><svg onload=alert(1)>',
  "it's & <b>bold</b>",
];

let dir: string;
let cleanup: () => Promise<void>;
let browser: TestBrowser;
let stats: Record<string, unknown>;
const saved = { dirs: process.env.JOBD_DATA_DIRS, programs: process.env.JOBD_PROGRAMS };

beforeAll(async () => {
  ({ dir, cleanup } = await dataDir('report'));
  process.env.JOBD_DATA_DIRS = JSON.stringify({ reports: dir });
  process.env.JOBD_PROGRAMS = JSON.stringify({ chromium: { path: CHROMIUM, args: [] } });
  await writeRecords(join(dir, 'records.ndjson'), syntheticRecords(2000));
  await writeRecords(
    join(dir, 'groups.ndjson'),
    HOSTILE.concat(['plain', 'b', 'c']).map((group, i) => ({ group, total: 10 * (i + 1), note: group })),
  );
  await writeRecords(
    join(dir, 'series.ndjson'),
    Array.from({ length: 30 }, (_, i) => ({
      day: `2026-11-${String(i + 1).padStart(2, '0')}`,
      value: Math.sin(i),
    })),
  );
  stats = (await statisticalAnalysis.handler(
    { source: join(dir, 'records.ndjson'), bins: BINS, output: join(dir, 'stats.json') },
    jobContext(),
  )) as Record<string, unknown>;
  browser = await launchBrowser();
  await mkdir(ARTIFACTS, { recursive: true });
});
afterAll(async () => {
  await browser?.close();
  await cleanup();
  for (const [k, v] of [
    ['JOBD_DATA_DIRS', saved.dirs] as const,
    ['JOBD_PROGRAMS', saved.programs] as const,
  ]) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

describe('report_generation', () => {
  it('writes a self-contained report whose charts show in chromium, with no request and no injected markup', async () => {
    const output = join(dir, 'report.html');
    const pdf = join(dir, 'report.pdf');
    const ctx = {
      ...jobContext(),
      dependencies: { describe: stats, aggregate: { rows: 7, output: 'x.ndjson' } },
    };
    const result = (await reportGeneration.handler(
      {
        title: 'Daily <totals>',
        output,
        pdf,
        statistics: [join(dir, 'stats.json')],
        tables: [
          {
            path: join(dir, 'groups.ndjson'),
            title: 'Totals by group',
            chart: { type: 'bar', x: 'group', y: 'total' },
          },
          { path: join(dir, 'series.ndjson'), max_rows: 20, chart: { type: 'line', x: 'day', y: 'value' } },
        ],
      },
      ctx,
    )) as Record<string, number | string>;
    // Six numeric fields, described twice (the dependency's result and the statistics file), plus two.
    expect(result).toMatchObject({ output, sections: 5, charts: 14, pdf });

    const html = await readFile(output, 'utf8');
    expect(html).not.toMatch(/<script|<img|<svg onload/i);

    const page = await browser.context.newPage();
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    const url = pathToFileURL(output).href;
    await page.goto(url, { waitUntil: 'load' });
    expect(requests).toEqual([url]);
    expect(await page.title()).toBe('Daily <totals>');
    expect(await page.locator('script, img, [onload], [src], [href]').count()).toBe(0);

    const charts = page.locator('figure');
    expect(await charts.count()).toBe(14);
    // Each histogram has one bar per bin; the table charts one bar per row and one point per shown row.
    const histograms = page.locator('figure', { hasText: 'histogram' });
    expect(await histograms.count()).toBe(12);
    for (let i = 0; i < 12; i++) expect(await histograms.nth(i).locator('svg rect.bar').count()).toBe(BINS);
    const totals = page.locator('figure', { hasText: 'total by group' });
    expect(await totals.locator('rect.bar').count()).toBe(7);
    const series = page.locator('figure', { hasText: 'value by day' });
    expect(await series.locator('circle.point').count()).toBe(20);
    expect(await series.locator('polyline.line').count()).toBe(1);
    // Rendered, with a size: the SVGs are laid out, not just present in the markup.
    const box = await histograms.first().locator('svg').boundingBox();
    expect(box?.width).toBeGreaterThan(100);
    // Hostile values show as text.
    const groupsTable = page.locator('section', { hasText: 'Totals by group' }).locator('tbody');
    for (const h of HOSTILE) await expect.poll(() => groupsTable.innerText()).toContain(h);
    expect(await page.locator('section', { hasText: 'series.ndjson' }).innerText()).toContain(
      'the first 20 of 30 rows',
    );
    await page.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    await page.close();

    const head = (await readFile(pdf)).subarray(0, 5).toString('latin1');
    expect(head).toBe('%PDF-');
    expect(result.pdf_bytes).toBeGreaterThan(1000);
  });

  it('refuses a file that is not a statistics file, naming it', async () => {
    await expect(
      reportGeneration.handler(
        { output: join(dir, 'bad.html'), statistics: [join(dir, 'groups.ndjson')] },
        jobContext(),
      ),
    ).rejects.toMatchObject({
      name: 'DataInputError',
      message: expect.stringContaining('groups.ndjson is not a JSON file'),
    });
    await expect(
      reportGeneration.handler({ output: join(dir, 'empty.html') }, jobContext()),
    ).rejects.toMatchObject({ message: expect.stringContaining('nothing to report') });
  });
});
