// DOM helpers. Job data only ever reaches the page as text nodes or attribute values set through the
// DOM API: never as HTML, so nothing a job stores can become markup or script.
const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('a', { href, class }, 'text', child, ...). */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
}

export function fmtTime(v) {
  if (!v) return '';
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleString();
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${(ms / 60_000).toFixed(1)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

export function jobLink(id, label) {
  return h('a', { href: `#/job/${encodeURIComponent(id)}`, class: 'mono' }, label ?? id);
}

export function stateBadge(state) {
  return h('span', { class: `state state-${state}` }, state);
}

function fillOf(pct) {
  const el = h('div', { class: 'progress-fill' });
  el.style.width = `${pct}%`;
  return el;
}

/** A progress bar whose value a test (or a screen reader) reads from aria-valuenow. */
export function progressBar(job) {
  const pct = Math.max(0, Math.min(100, job.progress?.percent ?? (job.state === 'completed' ? 100 : 0)));
  return h(
    'div',
    {
      class: 'progress',
      role: 'progressbar',
      'aria-valuemin': 0,
      'aria-valuemax': 100,
      'aria-valuenow': Math.round(pct),
      'data-job': job._id,
      title: job.progress?.message ?? '',
    },
    // Through the CSSOM: the CSP allows no inline style attributes.
    fillOf(pct),
    h(
      'span',
      { class: 'progress-label' },
      `${Math.round(pct)}%${job.progress?.message ? ` · ${job.progress.message}` : ''}`,
    ),
  );
}

export function table(headers, rows, attrs = {}) {
  return h(
    'table',
    attrs,
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headers.map((x) => h('th', {}, x)),
      ),
    ),
    h(
      'tbody',
      {},
      rows.length === 0
        ? h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, 'none'))
        : rows.map((r) =>
            h(
              'tr',
              r.attrs ?? {},
              (r.cells ?? r).map((c) => h('td', {}, c)),
            ),
          ),
    ),
  );
}

export function section(title, ...children) {
  return h('section', {}, h('h2', {}, title), ...children);
}
