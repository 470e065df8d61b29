// Keeps the page current. With the server's event stream (/api/events, server-sent events), each job
// transition refreshes the view at once; it is read through fetch rather than EventSource so that it
// can carry the bearer token, and it resumes with Last-Event-ID after a drop. Without the stream (an
// older server, or a proxy that buffers), the view is polled every 2 s. Progress is not a
// transition, so a view showing running jobs is also polled every 2 s while the stream is up.
import { authHeaders } from './api.js';

export const POLL_MS = 2000;
const RETRY_STREAM_MS = 30_000;

export class Live {
  constructor({ onChange, onStatus }) {
    this.onChange = onChange;
    this.onStatus = onStatus;
    this.streaming = false;
    this.lastEventId = null;
    this.wantsProgress = false;
    this.pending = null;
  }

  start() {
    this.timer = setInterval(() => {
      if (!this.streaming || this.wantsProgress) this.onChange('poll');
    }, POLL_MS);
    void this.connect();
  }

  status(text) {
    this.onStatus(text);
  }

  /** Coalesces bursts of events into one refresh. */
  changed() {
    if (this.pending) return;
    this.pending = setTimeout(() => {
      this.pending = null;
      this.onChange('event');
    }, 150);
  }

  async connect() {
    for (;;) {
      let delay = RETRY_STREAM_MS;
      try {
        await this.read();
        delay = 1000; // the stream ended cleanly: reconnect soon, resuming after the last event
      } catch {
        // No stream: poll. The next connection starts afresh (each one re-reads the view anyway), so a
        // resume point the server has since lost is not offered again and again.
        this.lastEventId = null;
      }
      this.streaming = false;
      this.status(`polling every ${POLL_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }

  async read() {
    const headers = { ...authHeaders(), accept: 'text/event-stream' };
    if (this.lastEventId) headers['last-event-id'] = this.lastEventId;
    const r = await fetch('/api/events', { headers });
    if (!r.ok || !(r.headers.get('content-type') ?? '').includes('text/event-stream') || !r.body) {
      void r.body?.cancel();
      throw new Error(`no event stream (HTTP ${r.status})`);
    }
    this.streaming = true;
    this.status('live: event stream');
    this.changed();
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let data = [];
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      const lines = buf.split(/\r\n|\r|\n/);
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (line === '') {
          if (id !== null) this.lastEventId = id;
          if (data.length > 0) this.changed();
          data = [];
          id = null;
        } else if (!line.startsWith(':')) {
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'data') data.push(val);
          else if (field === 'id') id = val;
        }
      }
    }
  }
}
