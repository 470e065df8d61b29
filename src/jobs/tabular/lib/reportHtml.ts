/**
 * report_generation's HTML: one self-contained page (inline CSS, inline SVG charts, no script, a
 * Content-Security-Policy that forbids every fetch), so it opens the same offline, from a mail
 * attachment or an archive. Every value from the data goes through `esc`: record values cannot inject
 * markup.
 */
import type { FieldStatistics } from './statistics.js';

export interface StatisticsSection {
  kind: 'statistics';
  title: string;
  source: string;
  records: number;
  fields: Record<string, FieldStatistics>;
}

export interface TableSection {
  kind: 'table';
  title: string;
  columns: string[];
  rows: Array<Record<string, unknown>>;
  /** Rows in the whole table (the page shows the first `rows`). */
  total: number;
  chart?: { type: 'bar' | 'line'; x: string; y: string };
}

export type ReportSection = StatisticsSection | TableSection;

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text safe in element content and in quoted attribute values. */
export function esc(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** A number as people read it: integers whole, others to 6 significant digits. */
export function fmt(v: unknown): string {
  if (typeof v === 'number') {
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return v.toLocaleString('en-US');
    return Math.abs(v) >= 1e-4 && Math.abs(v) < 1e15 ? String(Number(v.toPrecision(6))) : v.toExponential(5);
  }
  if (v === null || v === undefined) return '';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

const W = 480;
const H = 180;
const PAD = 28;

/** One <rect class="bar"> per value, heights scaled to the largest; labels under the first and last. */
export function barChart(values: number[], labels: string[], caption: string): string {
  const max = Math.max(0, ...values);
  const min = Math.min(0, ...values);
  const span = max - min || 1;
  const bw = (W - 2 * PAD) / Math.max(values.length, 1);
  const y0 = PAD + ((H - 2 * PAD) * max) / span;
  const bars = values.map((v, i) => {
    const h = ((H - 2 * PAD) * Math.abs(v)) / span;
    const y = v >= 0 ? y0 - h : y0;
    return `<rect class="bar" x="${(PAD + i * bw + 1).toFixed(2)}" y="${y.toFixed(2)}" width="${Math.max(bw - 2, 1).toFixed(2)}" height="${h.toFixed(2)}"><title>${esc(labels[i])}: ${esc(fmt(v))}</title></rect>`;
  });
  return svg(caption, bars.join(''), labels[0], labels.at(-1), max, min);
}

/** A polyline through the points and one <circle class="point"> per point, x by position. */
export function lineChart(values: number[], labels: string[], caption: string): string {
  const max = Math.max(...values);
  const min = Math.min(...values);
  const span = max - min || 1;
  const step = (W - 2 * PAD) / Math.max(values.length - 1, 1);
  const pts = values.map((v, i) => [PAD + i * step, H - PAD - ((H - 2 * PAD) * (v - min)) / span] as const);
  const line = `<polyline class="line" points="${pts.map(([x, y]) => `${x.toFixed(2)},${y.toFixed(2)}`).join(' ')}"/>`;
  const dots = pts.map(
    ([x, y], i) =>
      `<circle class="point" cx="${x.toFixed(2)}" cy="${y.toFixed(2)}" r="3"><title>${esc(labels[i])}: ${esc(fmt(values[i]))}</title></circle>`,
  );
  return svg(caption, line + dots.join(''), labels[0], labels.at(-1), max, min);
}

function svg(caption: string, body: string, first: unknown, last: unknown, max: number, min: number): string {
  return `<figure><svg class="chart" role="img" aria-label="${esc(caption)}" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg">
<line class="axis" x1="${PAD}" y1="${H - PAD}" x2="${W - PAD}" y2="${H - PAD}"/><line class="axis" x1="${PAD}" y1="${PAD}" x2="${PAD}" y2="${H - PAD}"/>
${body}
<text x="${PAD}" y="${H - 8}">${esc(fmt(first))}</text><text x="${W - PAD}" y="${H - 8}" text-anchor="end">${esc(fmt(last))}</text>
<text x="${PAD + 4}" y="${PAD - 8}">${esc(fmt(max))}</text><text x="${PAD + 4}" y="${H - PAD - 4}">${esc(fmt(min))}</text>
</svg><figcaption>${esc(caption)}</figcaption></figure>`;
}

function statisticsSection(s: StatisticsSection): string {
  const names = Object.keys(s.fields);
  const qs = s.fields[names[0] ?? '']?.quantiles.map((q) => q.q) ?? [];
  const head = ['field', 'count', 'missing', 'non-numeric', 'mean', 'std (sample)', 'min', 'median', 'max']
    .concat(qs.map((q) => `q${q}`))
    .map((h) => `<th>${esc(h)}</th>`)
    .join('');
  const rows = names.map((n) => {
    const f = s.fields[n]!;
    const cells = [f.count, f.missing, f.non_numeric, f.mean, f.std_sample, f.min, f.median, f.max].concat(
      f.quantiles.map((q) => q.value),
    );
    return `<tr><th>${esc(n)}</th>${cells.map((c) => `<td>${esc(fmt(c))}</td>`).join('')}</tr>`;
  });
  const charts = names
    .filter((n) => s.fields[n]!.histogram)
    .map((n) => {
      const h = s.fields[n]!.histogram!;
      const labels = h.counts.map(
        (_, i) => `[${fmt(h.edges[i])}, ${fmt(h.edges[i + 1])}${i === h.counts.length - 1 ? ']' : ')'}`,
      );
      return barChart(h.counts, labels, `${n}: histogram`);
    });
  return `<section class="statistics"><h2>${esc(s.title)}</h2>
<p>${esc(s.source)}: ${esc(fmt(s.records))} records</p>
<table><thead><tr>${head}</tr></thead><tbody>${rows.join('\n')}</tbody></table>
<div class="charts">${charts.join('\n')}</div></section>`;
}

function tableSection(t: TableSection): string {
  const head = t.columns.map((c) => `<th>${esc(c)}</th>`).join('');
  const rows = t.rows.map((r) => `<tr>${t.columns.map((c) => `<td>${esc(fmt(r[c]))}</td>`).join('')}</tr>`);
  let chart = '';
  if (t.chart) {
    const pts = t.rows.filter((r) => typeof r[t.chart!.y] === 'number');
    const values = pts.map((r) => r[t.chart!.y] as number);
    const labels = pts.map((r) => fmt(r[t.chart!.x]));
    const caption = `${t.chart.y} by ${t.chart.x}`;
    chart = t.chart.type === 'bar' ? barChart(values, labels, caption) : lineChart(values, labels, caption);
  }
  const shown =
    t.rows.length < t.total
      ? `the first ${fmt(t.rows.length)} of ${fmt(t.total)} rows`
      : `${fmt(t.total)} rows`;
  return `<section class="table"><h2>${esc(t.title)}</h2><p>${esc(shown)}</p>${chart}
<table><thead><tr>${head}</tr></thead><tbody>${rows.join('\n')}</tbody></table></section>`;
}

const CSS = `body{font:14px/1.4 "Liberation Sans",Arial,sans-serif;margin:2em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ddd;padding:2px 8px;text-align:right}
thead th{background:#f3f3f3}tbody th{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:.9em;color:#555}
.chart .bar{fill:#4a7fb5}.chart .line{fill:none;stroke:#4a7fb5;stroke-width:1.5}.chart .point{fill:#c0504d}
.chart .axis{stroke:#888}.chart text{font-size:10px;fill:#555}
@media print{section{break-inside:avoid}}`;

export function renderReport(title: string, generatedAt: Date, sections: readonly ReportSection[]): string {
  const body = sections
    .map((s) => (s.kind === 'statistics' ? statisticsSection(s) : tableSection(s)))
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body><h1>${esc(title)}</h1><p class="generated">Generated by jobd at ${esc(generatedAt.toISOString())}</p>
${body}
</body></html>
`;
}
