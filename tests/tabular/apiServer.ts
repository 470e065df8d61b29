/**
 * A paged JSON API on loopback for the api_ingestion tests: records 1..total, served by page/size
 * (`/page`, or POST `/search`), by cursor (`/cursor`) or by Link header (`/link`). It checks the secret
 * header, enforces a rate limit (a request too soon after the previous one gets 429), answers scheduled
 * faults (429 with Retry-After in seconds or as an HTTP date, 500, 503, a hang), and can hold a page
 * until released, to freeze a job mid-way.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export type Fault =
  | { status: 429; retryAfter: 'seconds' | 'date' }
  | { status: 500 | 503 }
  /** No answer: the client's timeout must end the request. */
  | { status: 'hang' };

export interface ApiServerOptions {
  total: number;
  token: string;
  /** Requests closer than this to the previous one get 429 (0: no limit). */
  minIntervalMs?: number;
  /** Faults by request number (1-based, counting every request). */
  faults?: Record<number, Fault>;
}

export interface ServedRequest {
  n: number;
  at: number;
  method: string;
  url: string;
  status: number | 'hang';
  records: number;
}

export interface ApiServer {
  url: string;
  requests: ServedRequest[];
  /** 429s answered because the client came too soon (not scheduled faults). */
  rateViolations(): number;
  /**
   * Hold every request for this page offset (records after `offset`) until release(); resolves when one
   * arrives. `gone` resolves when the client of a held request closed its connection (it died).
   */
  hold(offset: number): Promise<void>;
  gone(): Promise<void>;
  release(): void;
  close(): Promise<void>;
}

function slice(total: number, offset: number, size: number): Array<{ id: number; name: string }> {
  const out = [];
  for (let id = offset + 1; id <= Math.min(total, offset + size); id++) out.push({ id, name: `r${id}` });
  return out;
}

async function bodyOf(req: IncomingMessage): Promise<Record<string, unknown>> {
  let text = '';
  for await (const c of req) text += String(c);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

export async function startApiServer(o: ApiServerOptions): Promise<ApiServer> {
  const requests: ServedRequest[] = [];
  let last = 0;
  let violations = 0;
  let held: { offset: number; arrived: () => void; waiting: Array<() => void> } | null = null;
  let onGone: () => void = () => undefined;
  const goneOnce = new Promise<void>((resolve) => (onGone = resolve));
  const hanging = new Set<ServerResponse>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const n = requests.length + 1;
    const at = Date.now();
    const entry: ServedRequest = { n, at, method: req.method!, url: req.url!, status: 200, records: 0 };
    requests.push(entry);
    const send = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      entry.status = status;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    const tooSoon = o.minIntervalMs && last && at - last < o.minIntervalMs;
    last = at;
    if (req.headers.authorization !== `Bearer ${o.token}`) return send(401, { error: 'unauthorized' });
    const fault = o.faults?.[n];
    if (fault?.status === 'hang') {
      entry.status = 'hang';
      hanging.add(res);
      return;
    }
    if (fault?.status === 429) {
      const retryAfter = fault.retryAfter === 'seconds' ? '1' : new Date(at + 1500).toUTCString();
      return send(429, { error: 'slow down' }, { 'retry-after': retryAfter });
    }
    if (fault) return send(fault.status, { error: 'transient' });
    if (tooSoon) {
      violations += 1;
      return send(429, { error: 'rate limit' }, { 'retry-after': '1' });
    }
    const url = new URL(req.url!, 'http://x');
    const q = url.searchParams;
    let offset: number;
    let size: number;
    let body: unknown;
    let headers: Record<string, string> = {};
    if (url.pathname === '/page' || url.pathname === '/search') {
      const b = req.method === 'POST' ? await bodyOf(req) : {};
      const page = Number(b.page ?? q.get('page'));
      size = Number(b.size ?? q.get('per_page'));
      offset = (page - 1) * size;
      body = { data: { items: slice(o.total, offset, size) } };
    } else if (url.pathname === '/cursor') {
      offset = q.get('cursor') ? Number(q.get('cursor')!.slice(1)) : 0;
      size = 7;
      const next = offset + size < o.total ? `c${offset + size}` : null;
      body = { items: slice(o.total, offset, size), meta: { next } };
    } else if (url.pathname === '/link') {
      offset = Number(q.get('offset') ?? 0);
      size = 9;
      body = slice(o.total, offset, size);
      if (offset + size < o.total) {
        headers = { link: `</link?offset=0>; rel="first", </link?offset=${offset + size}>; rel="next"` };
      }
    } else {
      return send(404, { error: 'no such path' });
    }
    if (held && held.offset === offset) {
      const h = held;
      res.once('close', () => {
        if (!res.writableEnded) onGone();
      });
      await new Promise<void>((resolve) => {
        h.waiting.push(resolve);
        h.arrived();
      });
    }
    const items = Array.isArray(body)
      ? body
      : ((body as { items?: unknown[]; data?: { items: unknown[] } }).items ??
        (body as { data: { items: unknown[] } }).data.items);
    entry.records = items.length;
    send(200, body, headers);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      res.writeHead(500);
      res.end(err.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    rateViolations: () => violations,
    hold: (offset) =>
      new Promise<void>((arrived) => {
        held = { offset, arrived, waiting: [] };
      }),
    gone: () => goneOnce,
    release: () => {
      const h = held;
      held = null;
      for (const w of h?.waiting ?? []) w();
    },
    close: async () => {
      for (const r of hanging) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
