/**
 * report_generation's core: gathers the sections (statistics files, NDJSON tables, the results of the
 * job's workflow dependencies), writes the HTML whole, and optionally prints it to PDF with headless
 * chromium (started from an argument array; the page loads nothing, so it needs no network).
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import type { CoreContext } from '../../lib/context.js';
import { renameIntoPlace, tempSibling, writeFileAtomic } from '../../lib/atomic.js';
import { DataInputError } from '../../lib/errors.js';
import { findProgram, runTool } from '../../lib/tool.js';
import type { ToolDef } from '../../lib/toolTable.js';
import { readRecords } from '../records.js';
import { renderReport, type ReportSection, type StatisticsSection, type TableSection } from './reportHtml.js';

export interface TableSpec {
  path: string;
  title?: string;
  max_rows: number;
  columns?: string[];
  chart?: { type: 'bar' | 'line'; x: string; y: string };
}

export interface ReportOptions {
  title: string;
  output: string;
  statistics: string[];
  tables: TableSpec[];
  /** Results of the job's dependencies by workflow key (ctx.dependencies), when included. */
  dependencies?: Record<string, unknown>;
  pdf?: { path: string; program: string; killGraceMs?: number };
  now: Date;
}

const MAX_COLUMNS = 50;

const statisticsShape = z.looseObject({
  source: z.string(),
  records: z.number(),
  fields: z.record(
    z.string(),
    z.looseObject({
      count: z.number(),
      missing: z.number(),
      non_numeric: z.number(),
      quantiles: z.array(z.object({ q: z.number(), value: z.number().nullable() })),
      histogram: z.object({ edges: z.array(z.number()), counts: z.array(z.number()) }).nullable(),
    }),
  ),
});

async function statisticsFile(path: string): Promise<StatisticsSection> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new DataInputError(`report_generation: ${path} is not a JSON file (${(err as Error).message})`);
  }
  const parsed = statisticsShape.safeParse(value);
  if (!parsed.success) {
    throw new DataInputError(
      `report_generation: ${path} is not a statistics file written by statistical_analysis (${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message})`,
    );
  }
  const s = parsed.data as unknown as Omit<StatisticsSection, 'kind' | 'title'>;
  return { kind: 'statistics', title: `Statistics of ${s.source}`, ...s };
}

async function tableFile(spec: TableSpec, signal: AbortSignal): Promise<TableSection> {
  const rows: Array<Record<string, unknown>> = [];
  const seen = new Set<string>();
  let total = 0;
  for await (const { record } of readRecords(spec.path, { signal })) {
    total += 1;
    if (rows.length >= spec.max_rows) continue;
    rows.push(record);
    for (const k of Object.keys(record)) if (seen.size < MAX_COLUMNS) seen.add(k);
  }
  return {
    kind: 'table',
    title: spec.title ?? spec.path,
    columns: spec.columns ?? [...seen],
    rows,
    total,
    ...(spec.chart ? { chart: spec.chart } : {}),
  };
}

/** A dependency's result: statistics when it is statistical_analysis's, else its fields as a table. */
function dependencySection(key: string, result: unknown): ReportSection {
  const stats = statisticsShape.safeParse(result);
  if (stats.success) {
    const s = stats.data as unknown as Omit<StatisticsSection, 'kind' | 'title'>;
    return { kind: 'statistics', title: `${key}: statistics of ${s.source}`, ...s };
  }
  const entries =
    result !== null && typeof result === 'object' && !Array.isArray(result)
      ? Object.entries(result as Record<string, unknown>)
      : [['result', result] as const];
  const rows = entries.map(([field, v]) => {
    const text = typeof v === 'object' && v !== null ? JSON.stringify(v) : v;
    return { field, value: typeof text === 'string' && text.length > 500 ? `${text.slice(0, 500)}…` : text };
  });
  return { kind: 'table', title: `${key}: result`, columns: ['field', 'value'], rows, total: rows.length };
}

const CHROMIUM: ToolDef = {
  name: 'chromium',
  program: 'chromium',
  debianPackage: 'chromium',
  otherRetryable: true,
  exitCodes: {},
};

/** Prints the HTML file to PDF, whole or not at all. */
async function printPdf(
  html: string,
  pdf: NonNullable<ReportOptions['pdf']>,
  ctx: CoreContext,
): Promise<number> {
  const profile = await mkdtemp(join(tmpdir(), 'jobd-report-chromium-'));
  const tmp = tempSibling(pdf.path);
  try {
    await runTool(
      {
        tool: CHROMIUM,
        program: findProgram(pdf.program) ?? pdf.program,
        args: [
          '--headless',
          // The page is jobd's own, with no script and a policy that forbids every fetch; the sandbox
          // needs user namespaces that containers and root daemons often lack.
          '--no-sandbox',
          '--disable-gpu',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          `--user-data-dir=${profile}`,
          '--no-pdf-header-footer',
          `--print-to-pdf=${tmp}`,
          pathToFileURL(html).href,
        ],
        ...(pdf.killGraceMs !== undefined ? { killGraceMs: pdf.killGraceMs } : {}),
      },
      ctx,
    );
    const size = (await stat(tmp)).size;
    await renameIntoPlace(tmp, pdf.path);
    return size;
  } finally {
    await rm(tmp, { force: true });
    await rm(profile, { recursive: true, force: true });
  }
}

export interface ReportResult {
  output: string;
  bytes: number;
  sections: number;
  charts: number;
  pdf: string | null;
  pdf_bytes: number | null;
}

export async function generateReport(opts: ReportOptions, ctx: CoreContext): Promise<ReportResult> {
  const sections: ReportSection[] = [];
  for (const [key, result] of Object.entries(opts.dependencies ?? {}))
    sections.push(dependencySection(key, result));
  for (const path of opts.statistics) sections.push(await statisticsFile(path));
  ctx.progress(20, 'read the statistics');
  for (const t of opts.tables) sections.push(await tableFile(t, ctx.signal));
  ctx.progress(60, 'read the tables');
  if (sections.length === 0) {
    throw new DataInputError(
      'report_generation: nothing to report: give params.statistics or params.tables, or run it in a workflow after the jobs to report on',
    );
  }
  const html = renderReport(opts.title, opts.now, sections);
  await writeFileAtomic(opts.output, html);
  const charts = sections.reduce(
    (n, s) =>
      n +
      (s.kind === 'statistics' ? Object.values(s.fields).filter((f) => f.histogram).length : s.chart ? 1 : 0),
    0,
  );
  ctx.progress(80, 'wrote the HTML');
  const pdfBytes = opts.pdf ? await printPdf(opts.output, opts.pdf, ctx) : null;
  return {
    output: opts.output,
    bytes: Buffer.byteLength(html),
    sections: sections.length,
    charts,
    pdf: opts.pdf?.path ?? null,
    pdf_bytes: pdfBytes,
  };
}
