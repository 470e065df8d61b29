// A workflow's page: its state and its DAG of jobs, drawn, each node linking to its job.
import { api } from './api.js';
import { fmtTime, h, section, stateBadge } from './dom.js';
import { jobGraph } from './job.js';

export async function workflowView(id) {
  const { workflow, jobs } = await api(`/api/workflows/${encodeURIComponent(id)}`);
  return {
    title: `workflow ${workflow.name}`,
    running: !['completed', 'failed', 'cancelled'].includes(workflow.state),
    nodes: [
      h('h1', {}, 'Workflow ', workflow.name),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'id'),
        h('dd', { class: 'mono' }, workflow._id),
        h('dt', {}, 'state'),
        h('dd', {}, stateBadge(workflow.state)),
        h('dt', {}, 'created'),
        h('dd', {}, fmtTime(workflow.createdAt)),
        workflow.reason ? [h('dt', {}, 'reason'), h('dd', {}, workflow.reason)] : null,
      ),
      section(
        'DAG',
        jobGraph(`workflow ${workflow.name}`, jobs, (j) => `#/job/${encodeURIComponent(j._id)}`),
      ),
    ],
  };
}
