// The overview: queues and their depth, running jobs with their progress, recent failures,
// throughput and run time over the last hours, sessions and workflows, and a form to enqueue a job.
import { api, ApiError } from './api.js';
import { barChart, lineChart } from './charts.js';
import { fmtMs, fmtTime, h, jobLink, progressBar, section, stateBadge, table } from './dom.js';

const DEPTH_STATES = ['queued', 'running', 'retrying', 'waiting', 'failed'];

export async function overview() {
  const [queues, active, failed, timeline, sessions, workflows] = await Promise.all([
    api('/api/queues'),
    api('/api/tracking/active-jobs?limit=50'),
    api('/api/tracking/failed-jobs?limit=10'),
    api('/api/tracking/timeline?hours=6&buckets=36'),
    api('/api/jobs/?job_type=session_import&page_size=10'),
    api('/api/workflows?limit=10'),
  ]);
  const maxDepth = Math.max(
    1,
    ...queues.map((q) => DEPTH_STATES.reduce((a, st) => a + (q.counts[st] ?? 0), 0)),
  );
  const nodes = [
    section(
      'Queues',
      table(
        ['queue', 'depth', ...DEPTH_STATES, 'oldest queued'],
        queues.map((q) => {
          const depth = (q.counts.queued ?? 0) + (q.counts.retrying ?? 0) + (q.counts.waiting ?? 0);
          const bar = h('div', { class: 'depth' }, h('div', { class: 'depth-fill' }));
          bar.firstChild.style.width = `${(100 * depth) / maxDepth}%`;
          return {
            attrs: { 'data-queue': q.name },
            cells: [
              h('span', {}, q.name, q.paused ? h('span', { class: 'state state-paused' }, 'paused') : null),
              h('span', { class: 'depth-cell' }, bar, String(depth)),
              ...DEPTH_STATES.map((st) => String(q.counts[st] ?? 0)),
              q.oldestQueuedAgeMs !== null ? fmtMs(q.oldestQueuedAgeMs) : '',
            ],
          };
        }),
        { class: 'queues' },
      ),
    ),
    section(
      'Running',
      table(
        ['job', 'type', 'progress', 'started', 'worker'],
        active.map((j) => ({
          attrs: { 'data-job': j._id },
          cells: [
            jobLink(j._id),
            j.type,
            progressBar({ ...j, state: 'running' }),
            fmtTime(j.startedAt),
            j.worker ?? '',
          ],
        })),
        { class: 'running' },
      ),
    ),
    section(
      'Recent failures',
      table(
        ['job', 'type', 'finished', 'attempts', 'error'],
        failed.map((j) => ({
          attrs: { 'data-job': j._id },
          cells: [
            jobLink(j._id),
            j.type,
            fmtTime(j.finishedAt),
            String(j.attempts),
            h('span', { class: 'error' }, j.lastError ? `${j.lastError.name}: ${j.lastError.message}` : ''),
          ],
        })),
        { class: 'failures' },
      ),
    ),
    section(
      'Last 6 hours',
      h(
        'div',
        { class: 'charts' },
        barChart({
          title: 'Jobs finished',
          buckets: timeline.buckets.map((b) => ({ at: b.at, values: [b.completed, b.failed, b.cancelled] })),
          series: [
            { name: 'completed', cls: 's-completed' },
            { name: 'failed', cls: 's-failed' },
            { name: 'cancelled', cls: 's-cancelled' },
          ],
        }),
        lineChart({
          title: 'Run time (p50, p95)',
          yFmt: fmtMs,
          series: [
            {
              name: 'p50',
              cls: 's-p50',
              points: timeline.buckets.map((b) => ({ t: Date.parse(b.at), y: b.runP50Ms })),
            },
            {
              name: 'p95',
              cls: 's-p95',
              points: timeline.buckets.map((b) => ({ t: Date.parse(b.at), y: b.runP95Ms })),
            },
          ],
        }),
      ),
    ),
    section(
      'Microscope sessions',
      table(
        ['session', 'state', 'directory', 'progress', 'created'],
        sessions.items.map((j) => ({
          cells: [
            h('a', { href: `#/session/${encodeURIComponent(j._id)}`, class: 'mono' }, j._id),
            stateBadge(j.state),
            j.params?.session_dir ?? '',
            j.progress?.message ?? '',
            fmtTime(j.createdAt),
          ],
        })),
        { class: 'sessions' },
      ),
    ),
    section(
      'Workflows',
      table(
        ['workflow', 'name', 'state', 'jobs', 'created'],
        workflows.map((w) => ({
          cells: [
            h('a', { href: `#/workflow/${encodeURIComponent(w._id)}`, class: 'mono' }, w._id),
            w.name,
            stateBadge(w.state),
            String(w.jobCount),
            fmtTime(w.createdAt),
          ],
        })),
      ),
    ),
  ];
  return { nodes, running: active.length > 0 };
}

/** Drawn once per visit (not on each refresh), so typing is not interrupted. */
export function enqueueForm() {
  const type = h('input', { name: 'type', value: 'noop', required: true, spellcheck: 'false' });
  const params = h('textarea', { name: 'params', rows: 3, spellcheck: 'false' });
  params.value = '{}';
  const out = h('span', { class: 'result', role: 'status' });
  const form = h(
    'form',
    { class: 'enqueue' },
    h('label', {}, 'type ', type),
    h('label', {}, 'params (JSON) ', params),
    h('button', { type: 'submit' }, 'Enqueue'),
    out,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let p;
    try {
      p = JSON.parse(params.value || '{}');
    } catch (e) {
      out.textContent = `params: not JSON (${e.message})`;
      return;
    }
    try {
      const r = await api('/api/jobs/', { method: 'POST', body: { type: type.value, params: p } });
      out.replaceChildren('enqueued ', jobLink(r.job._id));
    } catch (e) {
      const detail =
        e instanceof ApiError && (e.status === 401 || e.status === 403)
          ? ' (enqueueing needs the admin token)'
          : '';
      out.textContent = `${e.message}${detail}`;
    }
  });
  return section('Enqueue a job', form);
}
