/**
 * A small server-sent events client over fetch for tests: parses the stream as the WHATWG spec says
 * (id, event, data fields; comments; blank line dispatches) and lets a test wait on what it received.
 */
export interface SseEvent {
  id: string | null;
  event: string;
  data: string;
}

export class SseClient {
  readonly events: SseEvent[] = [];
  /** Date.now() when each of `events` arrived. */
  readonly arrivedAt: number[] = [];
  comments = 0;
  /** The last event id, as a browser's EventSource would send it back (id-only blocks count). */
  lastId: string | null = null;
  ended = false;
  private readonly abort = new AbortController();
  private waiters: (() => void)[] = [];
  private done!: Promise<void>;

  private constructor(
    readonly status: number,
    readonly headers: Headers,
    readonly body: string,
  ) {}

  /** Connects; a non-200 answer is returned with its body read (no stream). */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const ctl = new AbortController();
    const r = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ctl.signal });
    if (r.status !== 200) return new SseClient(r.status, r.headers, await r.text());
    const c = new SseClient(r.status, r.headers, '');
    c.abort.signal.addEventListener('abort', () => ctl.abort());
    c.done = c.read(r.body!);
    return c;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    let buf = '';
    let id: string | null = null;
    let event = '';
    let data: string[] = [];
    try {
      for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (id !== null) this.lastId = id;
            if (data.length > 0) {
              this.events.push({ id, event: event || 'message', data: data.join('\n') });
              this.arrivedAt.push(Date.now());
            }
            id = null;
            event = '';
            data = [];
            this.wake();
            continue;
          }
          if (line.startsWith(':')) {
            this.comments++;
            continue;
          }
          const i = line.indexOf(':');
          const field = i < 0 ? line : line.slice(0, i);
          const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
          if (field === 'id') id = value;
          else if (field === 'event') event = value;
          else if (field === 'data') data.push(value);
        }
      }
    } catch {
      // aborted by close()
    } finally {
      this.ended = true;
      this.wake();
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves once `pred` holds (checked on every event), or rejects after timeoutMs naming `what`. */
  until(pred: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${this.events.length} events)`),
          ),
        timeoutMs,
      );
      const check = () => {
        if (pred()) {
          clearTimeout(timer);
          resolve();
        } else if (this.ended) {
          clearTimeout(timer);
          reject(new Error(`stream ended while waiting for ${what} (${this.events.length} events)`));
        } else this.waiters.push(check);
      };
      check();
    });
  }

  /** Resolves once the server ended the stream. */
  closed(): Promise<void> {
    return this.done ?? Promise.resolve();
  }

  async close(): Promise<void> {
    this.abort.abort();
    await this.closed();
  }
}
