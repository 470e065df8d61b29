// Small SVG charts drawn with the DOM API: stacked bars over time, lines/points over time, and a
// layered graph for job trees and workflow DAGs. Labels are text nodes; nothing is parsed as markup.
import { s } from './dom.js';

const W = 640;
const H = 200;
const PAD = { l: 48, r: 12, t: 12, b: 28 };

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function timeLabel(t, span) {
  const d = new Date(t);
  return span > 36 * 3_600_000
    ? `${d.getMonth() + 1}/${d.getDate()} ${String(d.getHours()).padStart(2, '0')}h`
    : `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
}

function frame(title, yMax, yFmt, yMin = 0) {
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': title });
  svg.append(s('title', {}, title));
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + ((H - PAD.t - PAD.b) * i) / 4;
    svg.append(s('line', { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: 'grid' }));
    svg.append(
      s(
        'text',
        { x: PAD.l - 4, y: y + 4, class: 'axis', 'text-anchor': 'end' },
        yFmt(yMax - ((yMax - yMin) * i) / 4),
      ),
    );
  }
  return svg;
}

/** Stacked bars: `buckets` [{ at, values: [n, ...] }], `series` [{ name, cls }]. */
export function barChart({ title, buckets, series, yFmt = (v) => String(Math.round(v)) }) {
  const totals = buckets.map((b) => b.values.reduce((a, v) => a + v, 0));
  const yMax = niceMax(Math.max(0, ...totals));
  const svg = frame(title, yMax, yFmt);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const bw = iw / Math.max(1, buckets.length);
  const span = buckets.length > 1 ? new Date(buckets.at(-1).at) - new Date(buckets[0].at) : 0;
  buckets.forEach((b, i) => {
    let y0 = PAD.t + ih;
    b.values.forEach((v, k) => {
      if (!v) return;
      const hgt = (v / yMax) * ih;
      y0 -= hgt;
      svg.append(
        s(
          'rect',
          {
            x: PAD.l + i * bw + 1,
            y: y0,
            width: Math.max(1, bw - 2),
            height: hgt,
            class: `bar ${series[k].cls}`,
            'data-n': v,
          },
          s('title', {}, `${new Date(b.at).toLocaleString()}: ${v} ${series[k].name}`),
        ),
      );
    });
    if (i % Math.ceil(buckets.length / 6) === 0)
      svg.append(s('text', { x: PAD.l + i * bw, y: H - 8, class: 'axis' }, timeLabel(b.at, span)));
  });
  return legend(svg, series);
}

/** Lines with points over time: `series` [{ name, cls, points: [{ t, y, label }] }]. */
export function lineChart({ title, series, yFmt = (v) => String(Math.round(v)), zeroBased = true }) {
  const pts = series.flatMap((x) => x.points).filter((p) => p.y !== null && p.y !== undefined);
  const ys = pts.map((p) => p.y);
  const ts = pts.map((p) => p.t);
  let yMin = 0;
  let yMax = niceMax(Math.max(0, ...ys));
  if (!zeroBased && ys.length > 0) {
    // Around the values, with a margin: a defocus of 1.6 to 1.8 µm should not be drawn from zero.
    const lo = Math.min(...ys);
    const hi = Math.max(...ys);
    const pad = hi > lo ? (hi - lo) * 0.1 : Math.abs(hi) * 0.1 || 1;
    yMin = lo - pad;
    yMax = hi + pad;
  }
  const svg = frame(title, yMax, yFmt, yMin);
  const iw = W - PAD.l - PAD.r;
  const ih = H - PAD.t - PAD.b;
  const t0 = ts.length ? Math.min(...ts) : 0;
  const t1 = ts.length ? Math.max(...ts) : 1;
  const x = (t) => PAD.l + (t1 > t0 ? ((t - t0) / (t1 - t0)) * iw : iw / 2);
  const y = (v) => PAD.t + ih - ((v - yMin) / (yMax - yMin)) * ih;
  for (const se of series) {
    const p = se.points.filter((q) => q.y !== null && q.y !== undefined);
    if (p.length > 1)
      svg.append(
        s('polyline', { points: p.map((q) => `${x(q.t)},${y(q.y)}`).join(' '), class: `line ${se.cls}` }),
      );
    for (const q of p)
      svg.append(
        s(
          'circle',
          { cx: x(q.t), cy: y(q.y), r: 3, class: `dot ${se.cls}` },
          s('title', {}, `${q.label ?? new Date(q.t).toLocaleString()}: ${yFmt(q.y)} ${se.name}`),
        ),
      );
  }
  if (ts.length) {
    svg.append(s('text', { x: PAD.l, y: H - 8, class: 'axis' }, timeLabel(t0, t1 - t0)));
    svg.append(
      s('text', { x: W - PAD.r, y: H - 8, class: 'axis', 'text-anchor': 'end' }, timeLabel(t1, t1 - t0)),
    );
  }
  return legend(svg, series);
}

function legend(svg, series) {
  let x = PAD.l + 4;
  for (const se of series) {
    svg.append(s('rect', { x, y: PAD.t + 2, width: 10, height: 10, class: `bar ${se.cls}` }));
    const label = s('text', { x: x + 14, y: PAD.t + 11, class: 'legend' }, se.name);
    svg.append(label);
    x += 24 + se.name.length * 7;
  }
  return svg;
}

/**
 * A layered drawing of a directed graph: `nodes` [{ id, label, sub, state, href }], `edges`
 * [[from, to]]. A node's layer is its longest path from a root, so every edge points down.
 */
export function graph({ title, nodes, edges }) {
  const ids = new Set(nodes.map((n) => n.id));
  const es = edges.filter(([a, b]) => ids.has(a) && ids.has(b) && a !== b);
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  // Longest-path layering; bounded passes so a cycle (which jobd refuses anyway) cannot hang the page.
  for (let pass = 0; pass < nodes.length; pass++) {
    let moved = false;
    for (const [a, b] of es)
      if (layer.get(b) < layer.get(a) + 1) {
        layer.set(b, layer.get(a) + 1);
        moved = true;
      }
    if (!moved) break;
  }
  const rows = [];
  for (const n of nodes) (rows[layer.get(n.id)] ??= []).push(n);
  const NW = 150;
  const NH = 40;
  const GX = 20;
  const GY = 36;
  const width = Math.max(...rows.map((r) => r?.length ?? 0), 1) * (NW + GX) + GX;
  const height = rows.length * (NH + GY) + GY;
  const pos = new Map();
  rows.forEach((r, li) =>
    (r ?? []).forEach((n, i) => {
      const off = (width - r.length * (NW + GX) + GX) / 2;
      pos.set(n.id, { x: off + i * (NW + GX), y: GY / 2 + li * (NH + GY) });
    }),
  );
  const svg = s('svg', {
    viewBox: `0 0 ${width} ${height}`,
    class: 'graph',
    role: 'img',
    'aria-label': title,
  });
  svg.append(
    s('title', {}, title),
    s(
      'defs',
      {},
      s(
        'marker',
        {
          id: 'arrow',
          viewBox: '0 0 10 10',
          refX: 10,
          refY: 5,
          markerWidth: 6,
          markerHeight: 6,
          orient: 'auto',
        },
        s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' }),
      ),
    ),
  );
  for (const [a, b] of es) {
    const p = pos.get(a);
    const q = pos.get(b);
    const x1 = p.x + NW / 2;
    const y1 = p.y + NH;
    const x2 = q.x + NW / 2;
    const y2 = q.y;
    svg.append(
      s('path', {
        d: `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`,
        class: 'edge',
        'marker-end': 'url(#arrow)',
      }),
    );
  }
  for (const n of nodes) {
    const p = pos.get(n.id);
    const g = s(
      'g',
      { class: `node state-${n.state}`, 'data-id': n.id },
      s('title', {}, `${n.label} (${n.state})${n.sub ? ` ${n.sub}` : ''}`),
      s('rect', { x: p.x, y: p.y, width: NW, height: NH, rx: 6 }),
      s('text', { x: p.x + 8, y: p.y + 16, class: 'node-label' }, clip(n.label, 20)),
      s(
        'text',
        { x: p.x + 8, y: p.y + 32, class: 'node-sub' },
        clip(`${n.state}${n.sub ? ` · ${n.sub}` : ''}`, 24),
      ),
    );
    svg.append(n.href ? s('a', { href: n.href }, g) : g);
  }
  return svg;
}

function clip(t, n) {
  const x = String(t);
  return x.length > n ? `${x.slice(0, n - 1)}…` : x;
}
