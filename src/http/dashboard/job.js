// A job's page: its state and progress, what it was given and returned, its errors, its event
// history, its log tail, and its tree (spawned children and jobs that depend on it), drawn.
import { api, ApiError, apiText } from './api.js';
import { graph } from './charts.js';
import { fmtMs, fmtTime, h, jobLink, progressBar, section, stateBadge, table } from './dom.js';

const FINISHED = new Set(['completed', 'failed', 'cancelled']);
const LOG_TAIL_CHARS = 16_384;

export function jobGraph(title, jobs, hrefOf) {
  const byId = new Map(jobs.map((j) => [j._id, j]));
  const edges = [];
  for (const j of jobs) {
    if (j.parentId && byId.has(j.parentId)) edges.push([j.parentId, j._id]);
    // A parent waiting for its children depends on them too; its edges to them are drawn once, down.
    for (const d of j.dependsOn ?? [])
      if (byId.has(d) && byId.get(d).parentId !== j._id) edges.push([d, j._id]);
  }
  return graph({
    title,
    nodes: jobs.map((j) => ({
      id: j._id,
      label: j.workflowKey ?? j.spawnKey?.split('/').slice(2).join('/') ?? j.type,
      sub: j.type,
      state: j.state,
      href: hrefOf(j),
    })),
    edges,
  });
}

export async function jobView(id) {
  let job;
  try {
    job = await api(`/api/jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404)
      return { nodes: [h('p', { class: 'error' }, `job ${id} not found`)] };
    throw e;
  }
  const [events, family, log] = await Promise.all([
    api(`/api/jobs/${encodeURIComponent(id)}/events`),
    api(`/api/jobs/${encodeURIComponent(id)}/with-subjobs`),
    // The whole log from whichever host ran the job, where the server stores logs; else the tail
    // kept on the job.
    apiText(`/api/jobs/${encodeURIComponent(id)}/logs`),
  ]);
  const tail =
    log === null ? job.logTail : log.length > LOG_TAIL_CHARS ? `…${log.slice(-LOG_TAIL_CHARS)}` : log;
  const facts = [
    ['state', stateBadge(job.state)],
    ['type', job.type],
    ['priority', String(job.priority)],
    ['attempts', `${job.attempts}${job.maxAttempts ? ` of ${job.maxAttempts}` : ''}`],
    ['created', fmtTime(job.createdAt)],
    ['started', fmtTime(job.startedAt)],
    ['finished', fmtTime(job.finishedAt)],
    ['run time', job.resources?.wallMs !== undefined ? fmtMs(job.resources.wallMs) : ''],
    ['worker', job.lease?.owner ?? ''],
    ['tags', (job.tags ?? []).join(', ')],
    ['parent', job.parentId ? jobLink(job.parentId) : ''],
    [
      'workflow',
      job.workflowId
        ? h('a', { href: `#/workflow/${encodeURIComponent(job.workflowId)}` }, job.workflowId)
        : '',
    ],
    ['dataset', job.datasetUuid ?? ''],
  ].filter(([, v]) => v !== '' && v !== undefined && v !== null);
  const nodes = [
    h('h1', {}, 'Job ', h('span', { class: 'mono', id: 'job-id' }, job._id)),
    h(
      'dl',
      { class: 'facts' },
      facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]),
    ),
    section('Progress', progressBar(job)),
    section('Params', h('pre', {}, JSON.stringify(job.params ?? {}, null, 2))),
    job.result !== undefined ? section('Result', h('pre', {}, JSON.stringify(job.result, null, 2))) : null,
    job.errors?.length
      ? section(
          'Errors',
          table(
            ['attempt', 'at', 'error'],
            job.errors.map((e) => [
              String(e.attempt),
              fmtTime(e.at),
              h('span', { class: 'error' }, `${e.name}${e.code ? ` [${e.code}]` : ''}: ${e.message}`),
            ]),
          ),
        )
      : null,
    section(
      'History',
      table(
        ['at', 'from', 'to', 'attempt', 'worker', 'message'],
        events.map((e) => [
          fmtTime(e.at),
          e.from ?? '',
          e.to,
          String(e.attempt),
          e.worker ?? '',
          `${e.message ?? ''}${e.recovered ? ' (recovered)' : ''}`,
        ]),
        { class: 'history' },
      ),
    ),
    section('Log tail', h('pre', { class: 'log' }, tail || '(no output)')),
    family.subjobs.length > 0 || job.parentId
      ? section(
          'Job tree',
          jobGraph(
            `jobs around ${job._id}`,
            [family.job, ...family.subjobs],
            (j) => `#/job/${encodeURIComponent(j._id)}`,
          ),
        )
      : null,
  ];
  return { nodes, running: !FINISHED.has(job.state), title: `job ${job._id}` };
}

/** Run now, cancel and retry: drawn once per visit; they need the admin token. */
export function jobActions(id, refresh) {
  const out = h('span', { class: 'result', role: 'status' });
  const button = (label, action) => {
    const b = h('button', { type: 'button' }, label);
    b.addEventListener('click', async () => {
      try {
        await api(`/api/jobs/${encodeURIComponent(id)}/${action}`, { method: 'POST' });
        out.textContent = `${label}: done`;
        refresh();
      } catch (e) {
        out.textContent = `${label}: ${e.message}`;
      }
    });
    return b;
  };
  return h(
    'div',
    { class: 'actions' },
    button('Run now', 'start'),
    button('Cancel', 'cancel'),
    button('Retry', 'retry'),
    out,
  );
}
