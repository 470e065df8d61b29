// The dashboard's entry: a hash router (#/, #/job/<id>, #/workflow/<id>, #/session/<id>), the token
// form, and the refresh loop that keeps the shown view current.
import { ApiError, onTokenNeeded, setToken, token } from './api.js';
import { h, replace } from './dom.js';
import { jobActions, jobView } from './job.js';
import { Live } from './live.js';
import { enqueueForm, overview } from './overview.js';
import { sessionView } from './session.js';
import { workflowView } from './workflow.js';

const main = document.getElementById('main');
const liveEl = document.getElementById('live');
const tokenForm = document.getElementById('token-form');
const tokenInput = document.getElementById('token-input');
const tokenWhy = document.getElementById('token-why');

function route() {
  const [, kind, id] = /^#\/(job|workflow|session)\/(.+)$/.exec(location.hash) ?? [];
  const key = decodeURIComponent(id ?? '');
  if (kind === 'job')
    return { key: `job:${key}`, render: () => jobView(key), once: (r) => jobActions(key, r) };
  if (kind === 'workflow') return { key: `workflow:${key}`, render: () => workflowView(key) };
  if (kind === 'session') return { key: `session:${key}`, render: () => sessionView(key) };
  return { key: 'overview', render: () => overview(), once: () => enqueueForm() };
}

let current = null;
let liveArea = null;
let busy = false;
let again = false;
let live = null;

async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  const r = route();
  try {
    if (!current || current.key !== r.key) {
      current = r;
      liveArea = h('div', { id: 'view' });
      const once = r.once ? r.once(refresh) : null;
      // A job's actions above its page; the enqueue form below the overview.
      if (r.key.startsWith('job:')) replace(main, once, liveArea);
      else replace(main, liveArea, once);
    }
    const out = await r.render();
    if (current.key === r.key) {
      replace(liveArea, out.nodes);
      if (live) live.wantsProgress = out.running === true;
      document.title = out.title ? `jobd · ${out.title}` : 'jobd';
      main.dataset.loaded = r.key;
    }
  } catch (e) {
    const msg = e instanceof ApiError ? `${e.status}: ${e.message}` : e.message;
    replace(liveArea, h('p', { class: 'error', role: 'alert' }, msg));
  } finally {
    busy = false;
    if (again) {
      again = false;
      void refresh();
    }
  }
}

onTokenNeeded((why) => {
  tokenForm.hidden = false;
  tokenWhy.textContent = why;
});
tokenForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  setToken(tokenInput.value.trim());
  tokenInput.value = '';
  tokenWhy.textContent = token() ? 'token kept for this tab' : '';
  void refresh();
});
document.getElementById('token-clear').addEventListener('click', () => {
  setToken('');
  tokenWhy.textContent = 'token forgotten';
});
if (token()) tokenForm.hidden = false;

window.addEventListener('hashchange', () => void refresh());
live = new Live({
  onChange: () => void refresh(),
  onStatus: (text) => {
    liveEl.textContent = text;
    liveEl.dataset.mode = text.startsWith('live') ? 'stream' : 'poll';
  },
});
live.start();
void refresh();
