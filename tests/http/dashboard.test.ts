/**
 * The web dashboard in Debian's chromium (headless, through playwright-core), served by one in-process
 * daemon for the file, with http.authReads on: the page asks for a token; a job enqueued through the
 * API appears among the running jobs and its progress bar moves step by step (the test moves the
 * job, no sleeps) to completion; its page shows its history, log tail and state (screenshot kept in
 * test-artifacts/); an imported SerialEM session shows its per-exposure plots and thumbnails; job
 * data is shown as text, never as markup. The image route is confined to the data dirs.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pino from 'pino';
import type { Page } from 'playwright-core';
import pngjs from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { writeSerialemSession, fixtureExposures } from '../fixtures/sessions/makeSessions.js';
import { launchBrowser, type TestBrowser } from '../helpers/browser.js';
import { waitUntil } from '../helpers/waitFor.js';
import { fixtureHandler, testConfig } from '../integration/daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const ADMIN = 'admin-token-dashboard-0123456789';
const READ = 'read-token-dashboard-0123456789';
/** Screenshots are kept here (gitignored) for a person or CI to look at. */
export const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const WAIT = { timeout: 60_000 };

/** What the page scripts below touch (this project compiles without the DOM library). */
interface Browser {
  sessionStorage: { getItem(k: string): string | null };
  document: { getElementById(id: string): unknown };
  pwned?: number;
}

let f: StoreFixture;
let d: Daemon;
let client: JobdClient;
let browser: TestBrowser;
let page: Page;
let base = '';
let scratch = '';
let data = '';
const problems: string[] = [];

async function call(method: string, path: string, body?: unknown, token: string | null = ADMIN) {
  const r = await fetch(base + path, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: r.status, headers: r.headers, body: (await r.arrayBuffer()) as ArrayBuffer };
}
const json = (b: ArrayBuffer) => JSON.parse(Buffer.from(b).toString('utf8'));

/** Opens a view of the page with the read token already kept (the first case shows how it is asked). */
async function open(hash: string): Promise<void> {
  if (!page.url().startsWith(base)) await page.goto(`${base}/`);
  await page.evaluate(
    (t) =>
      (
        globalThis as unknown as Browser & { sessionStorage: { setItem(k: string, v: string): void } }
      ).sessionStorage.setItem('jobd.token', t),
    READ,
  );
  await page.goto(`${base}/${hash}`);
}

const progressOf = (id: string) =>
  page.locator(`table.running [role=progressbar][data-job="${id}"]`).getAttribute('aria-valuenow');

beforeAll(async () => {
  f = await openStoreFixture('http_dashboard');
  scratch = await mkdtemp(join(tmpdir(), 'jobd-dashboard-'));
  data = join(scratch, 'data');
  mkdirSync(data);
  const stand = { handler: fixtureHandler('sessionStep.mjs'), mode: 'pooled' as const };
  const config: ResolvedConfig = {
    ...testConfig(f, {
      jobTypes: {
        steps: { handler: fixtureHandler('steps.mjs'), mode: 'pooled', maxAttempts: 1 },
        motion_correction: stand,
        ctf_estimation: stand,
        fft_power_spectrum: stand,
      },
      dataDirs: { data },
    }),
    http: {
      host: '127.0.0.1',
      port: 0,
      tokens: [
        { token: ADMIN, role: 'admin' },
        { token: READ, role: 'read' },
      ],
      authReads: true,
      bodyLimitBytes: 1 << 20,
      rateLimit: null,
      corsOrigins: [],
      metricsCacheMs: 0,
    },
  };
  d = await startDaemon({ config, logger: pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' }) });
  base = d.httpUrl!;
  client = JobdClient.over(f.store, { mongoUri: f.t.uri, database: f.t.dbName });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  // A CSP violation or a script error fails the file at the end.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[14]/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  // The console's "status of 500" line does not say which request: this does.
  page.on('response', (r) => {
    if (r.status() >= 500) problems.push(`${r.status()} ${r.request().method()} ${r.url()}`);
  });
  mkdirSync(ARTIFACTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await d?.stop({ graceMs: 0 });
  await f?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

describe('dashboard', () => {
  it('asks for a token, then follows a job from enqueue to completion and shows its page', async () => {
    const res = await page.goto(`${base}/`);
    expect(res!.status()).toBe(200);
    const csp = res!.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe');

    // Reads need a token here: the page says so and takes one (kept in sessionStorage).
    await page.locator('#token-form').waitFor({ state: 'visible', ...WAIT });
    await page.fill('#token-input', READ);
    await page.click('#token-form button[type=submit]');
    await page.locator('main[data-loaded=overview] table.queues').waitFor(WAIT);
    expect(
      await page.evaluate(() => (globalThis as unknown as Browser).sessionStorage.getItem('jobd.token')),
    ).toBe(READ);

    const dir = join(scratch, 'steps');
    mkdirSync(dir);
    const r = await call('POST', '/api/jobs/', { type: 'steps', params: { dir, steps: 4 } });
    expect(r.status).toBe(201);
    const id = json(r.body).job._id as string;

    // It appears among the running jobs, and its bar follows each step.
    await page.locator(`table.running tr[data-job="${id}"]`).waitFor(WAIT);
    const seen: string[] = [];
    for (let i = 1; i <= 4; i++) {
      writeFileSync(join(dir, `go-${i}`), '');
      const want = String(25 * i);
      await waitUntil(async () => (await progressOf(id)) === want, {
        timeoutMs: 60_000,
        intervalMs: 50,
        what: `the progress bar of ${id} at ${want}`,
      });
      seen.push((await progressOf(id))!);
    }
    expect(seen).toEqual(['25', '50', '75', '100']);
    writeFileSync(join(dir, 'done'), '');
    await page.locator(`table.running tr[data-job="${id}"]`).waitFor({ state: 'detached', ...WAIT });
    expect((await client.get(id))!.state).toBe('completed');

    // Its page: state, bar at 100 %, the history of its transitions and its log tail.
    await open(`#/job/${id}`);
    await page.locator(`main[data-loaded="job:${id}"]`).waitFor(WAIT);
    expect(await page.textContent('#job-id')).toBe(id);
    expect(await page.textContent('.facts')).toContain('completed');
    expect(await page.getAttribute('[role=progressbar]', 'aria-valuenow')).toBe('100');
    const history = await page.locator('table.history tbody tr td:nth-child(3)').allTextContents();
    expect(history).toEqual(expect.arrayContaining(['queued', 'running', 'completed']));
    expect(await page.textContent('pre.log')).toContain('step 4 of 4');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-job.png'), fullPage: true });
  }, 180_000);

  it('shows job data as text: an error holding markup stays text among the recent failures', async () => {
    const evil = '<img src=x id=pwned> & <script>window.pwned=1</script>';
    const r = await call('POST', '/api/jobs/', {
      type: 'steps',
      params: { dir: scratch, steps: 1, fail: evil },
    });
    const id = json(r.body).job._id as string;
    await client.waitFor(id, { timeoutMs: 60_000 });
    await open('#/');
    const row = page.locator(`table.failures tr[data-job="${id}"]`);
    await row.waitFor(WAIT);
    expect(await row.locator('.error').textContent()).toBe(`Error: ${evil}`);
    const injected = await page.evaluate(() => {
      const g = globalThis as unknown as Browser;
      return [g.document.getElementById('pwned'), g.pwned ?? null];
    });
    expect(injected).toEqual([null, null]);
    // The throughput chart counts the two finished jobs: one completed, one failed.
    const bars = page.locator('svg.chart rect.bar[data-n]');
    const counted = await bars.evaluateAll((rs) =>
      rs.map((r) => [r.getAttribute('class'), Number(r.getAttribute('data-n'))] as const),
    );
    const sum = (cls: string) => counted.filter(([c]) => c === `bar ${cls}`).reduce((a, [, n]) => a + n, 0);
    expect([sum('s-completed'), sum('s-failed')]).toEqual([1, 1]);

    // A workflow's DAG: a → b, a → c, (b, c) → d.
    const wf = await client.submitWorkflow({
      name: 'diamond',
      jobs: [
        { key: 'a', type: 'noop' },
        { key: 'b', type: 'noop', dependsOn: ['a'] },
        { key: 'c', type: 'noop', dependsOn: ['a'] },
        { key: 'd', type: 'noop', dependsOn: ['b', 'c'] },
      ],
    });
    await open(`#/workflow/${wf.workflow._id}`);
    await page.locator(`main[data-loaded="workflow:${wf.workflow._id}"] svg.graph`).waitFor(WAIT);
    const labels = await page.locator('svg.graph g.node text.node-label').allTextContents();
    expect(labels.sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(await page.locator('svg.graph path.edge').count()).toBe(4);
  }, 120_000);

  it('a session page plots each exposure and shows its aligned sum, power spectrum and CTF thumbnails', async () => {
    const sessionDir = join(data, 'session');
    const want = fixtureExposures('mov', 3);
    await writeSerialemSession(sessionDir, want);
    const r = await call('POST', '/api/jobs/', {
      type: 'session_import',
      params: { session_dir: sessionDir, output_dir: join(data, 'out'), settle_ms: 0 },
    });
    expect(r.status).toBe(201);
    const id = json(r.body).job._id as string;
    const done = await client.waitFor(id, { timeoutMs: 120_000 });
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed');

    await open(`#/session/${id}`);
    await page.locator(`main[data-loaded="session:${id}"]`).waitFor(WAIT);
    expect(await page.textContent('#session-counts')).toBe('3 imported, 3 processed, 0 failed');
    const charts = page.locator('.session-charts svg.chart');
    expect(await charts.count()).toBe(4);
    // Defocus has U and V per exposure; the other three one point per exposure.
    const dots = await charts.evaluateAll((svgs) => svgs.map((s) => s.querySelectorAll('circle.dot').length));
    expect(dots).toEqual([6, 3, 3, 3]);
    const titles = await charts.evaluateAll((svgs) => svgs.map((s) => s.querySelector('title')?.textContent));
    expect(titles).toEqual(['Defocus (µm)', 'Astigmatism (Å)', 'CTF fit resolution (Å)', 'Total drift (px)']);
    // The stand-in's defocus U for exposure n is 15000 + 1000 n Å.
    const rows = await page
      .locator('table.exposures tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [tr.getAttribute('data-exposure'), tr.children[2]?.textContent]));
    expect(rows.sort()).toEqual([
      ['mov1', '16000.0'],
      ['mov2', '17000.0'],
      ['mov3', '18000.0'],
    ]);
    // Nine thumbnails: per exposure its aligned sum (an MRC the server turned into a PNG: 300×200
    // halved to 150×100), its power spectrum and its CTF fit (32×32 PNGs), each loaded as an image.
    const loaded = () =>
      page.locator('img.thumb').evaluateAll((imgs) =>
        imgs
          .filter((i) => (i as unknown as { complete: boolean }).complete)
          .map((i) => {
            const img = i as unknown as { naturalWidth: number; naturalHeight: number };
            return `${i.getAttribute('data-kind')} ${img.naturalWidth}x${img.naturalHeight}`;
          })
          .filter((k) => !k.endsWith(' 0x0'))
          .sort(),
      );
    const thumbs = [
      ...Array(3).fill('aligned-sum 150x100'),
      ...Array(3).fill('ctf-fit 32x32'),
      ...Array(3).fill('power-spectrum 32x32'),
    ];
    await waitUntil(async () => JSON.stringify(await loaded()) === JSON.stringify(thumbs), {
      timeoutMs: 60_000,
      intervalMs: 50,
      what: 'nine thumbnails loaded',
    });
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-session.png'), fullPage: true });

    // The import job's page draws its tree: the job and its nine children, each chain linked.
    await open(`#/job/${id}`);
    await page.locator(`main[data-loaded="job:${id}"] svg.graph`).waitFor(WAIT);
    expect(await page.locator('svg.graph g.node').count()).toBe(1 + 3 * 3);
    // Parent to each child (9), motion → ctf and ctf → fft per exposure (6).
    expect(await page.locator('svg.graph path.edge').count()).toBe(9 + 6);
    expect(problems).toEqual([]);
  }, 180_000);

  it('serves images only from the data dirs, only real images, and the page only its own files', async () => {
    const png = new pngjs.PNG({ width: 2, height: 2 });
    const inside = join(data, 'img.png');
    writeFileSync(inside, pngjs.PNG.sync.write(png));
    const outside = join(scratch, 'secret.png');
    writeFileSync(outside, pngjs.PNG.sync.write(png));
    symlinkSync(outside, join(data, 'link.png'));
    writeFileSync(join(data, 'fake.png'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    const img = (p: string, token: string | null = READ) =>
      call('GET', `/api/images?path=${encodeURIComponent(p)}`, undefined, token);

    const ok = await img(inside);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toBe('image/png');
    expect(ok.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await img(inside, null)).status).toBe(401);
    const refused = [
      [outside, 403, 'outside the data dirs'],
      [join(data, 'link.png'), 403, 'outside the data dirs'],
      [join(data, 'fake.png'), 415, 'not a PNG, JPEG, GIF or WebP image'],
      [join(data, 'missing.png'), 404, 'does not exist'],
      ['img.png', 400, 'absolute path'],
      [`${data}/../secret.png`, 403, '".." segments'],
    ] as const;
    for (const [p, status, message] of refused) {
      const r = await img(p);
      expect([p, r.status], Buffer.from(r.body).toString()).toEqual([p, status]);
      const problem = json(r.body);
      expect(problem.errors[0].path).toBe('query.path');
      expect(problem.detail).toContain(message);
    }
    // Thumbnails are made of MRC images inside the data dirs only.
    const sum = join(data, 'out', 'mov1', 'mov1_sum.mrc');
    const thumb = (p: string) => call('GET', `/api/thumbnails?path=${encodeURIComponent(p)}`);
    const t = await thumb(sum);
    expect(t.status, Buffer.from(t.body).toString()).toBe(200);
    expect(t.headers.get('content-type')).toBe('image/png');
    const decoded = pngjs.PNG.sync.read(Buffer.from(t.body));
    expect([decoded.width, decoded.height]).toEqual([150, 100]);
    expect((await thumb(inside)).status).toBe(415);
    expect((await thumb(outside)).status).toBe(403);

    // Only the dashboard's own files, and the page holds no data: it is served without a token.
    expect((await call('GET', '/dashboard/app.js', undefined, null)).status).toBe(200);
    expect((await call('GET', '/dashboard/..%2fserver.js', undefined, null)).status).toBe(404);
    expect((await call('GET', '/dashboard/nope.js', undefined, null)).status).toBe(404);
  });
});
