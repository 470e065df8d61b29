/**
 * api_ingestion's core: pages of an HTTP API to an NDJSON record file, resumable.
 *
 * Pages are appended to a partial file beside the output; after each page (written and fsynced) a small
 * checkpoint records the next page (number, cursor or URL) and the partial file's length. A new attempt
 * after a crash cuts the partial file back to that length (a page written but not checkpointed goes)
 * and asks for the next page: every record is written once. On completion the partial file is renamed
 * to the output and the checkpoint removed.
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { HttpSourceSettings, TabularSource } from '../../../config/tabular.js';
import { sourceSecrets } from '../../../config/tabular.js';
import type { CoreContext } from '../../lib/context.js';
import { renameIntoPlace, writeFileAtomic } from '../../lib/atomic.js';
import { DataInputError, DataJobError, throwIfAborted } from '../../lib/errors.js';
import { redact } from '../../lib/tool.js';
import { HttpClient } from './httpClient.js';
import { valueAt } from './jsonPath.js';

export type Pagination =
  | { style: 'none' }
  | {
      style: 'page';
      page_param: string;
      size_param: string;
      size: number;
      first_page: number;
      in: 'query' | 'body';
    }
  | { style: 'cursor'; cursor_path: string; cursor_param: string; in: 'query' | 'body' }
  | { style: 'link' };

export interface ApiIngestInput {
  source: string;
  path: string;
  method: 'GET' | 'POST';
  query?: Record<string, string | number | boolean> | undefined;
  body?: Record<string, unknown> | undefined;
  records_path: string;
  pagination: Pagination;
  max_pages?: number | undefined;
  requests_per_second?: number | undefined;
  timeout_ms?: number | undefined;
  max_retries: number;
  max_retry_after_ms: number;
  output: string;
}

export interface ApiIngestResult {
  source: string;
  output: string;
  pages: number;
  records: number;
  requests: number;
  retries: number;
  bytes_written: number;
  /** The page this attempt started from (0: from the start; else it resumed after a crash). */
  resumed_at_page: number;
  duration_ms: number;
}

export interface ApiIngestEnv {
  sources: Readonly<Record<string, TabularSource>>;
  random?: () => number;
}

/** Where the next request goes: its page number, cursor, or (link style) URL. */
interface Next {
  page?: number;
  cursor?: string;
  url?: string;
}

interface Checkpoint {
  v: 1;
  fingerprint: string;
  next: Next;
  pages: number;
  records: number;
  bytes: number;
  done?: ApiIngestResult;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export function partialPath(output: string): string {
  return join(dirname(output), `.${basename(output)}.jobd-partial`);
}
export function checkpointPath(output: string): string {
  return join(dirname(output), `.${basename(output)}.jobd-checkpoint.json`);
}

/** What makes two runs the same ingestion: a checkpoint of another is not resumed. */
function fingerprint(input: ApiIngestInput): string {
  const { source, path, method, query, body, records_path, pagination } = input;
  return createHash('sha256')
    .update(JSON.stringify({ source, path, method, query, body, records_path, pagination }))
    .digest('hex');
}

function httpSource(env: ApiIngestEnv, name: string): HttpSourceSettings {
  const s = Object.hasOwn(env.sources, name) ? env.sources[name] : undefined;
  if (!s || s.kind !== 'http') {
    const names = Object.entries(env.sources)
      .filter(([, v]) => v.kind === 'http')
      .map(([k]) => k);
    throw new DataInputError(
      `source: "${name}" is not an http source of the settings' tabular.sources (http sources: ${names.length ? names.join(', ') : 'none'})`,
    );
  }
  return s;
}

async function readCheckpoint(file: string): Promise<Checkpoint | null> {
  try {
    const c = JSON.parse(await readFile(file, 'utf8')) as Checkpoint;
    return c.v === 1 ? c : null;
  } catch {
    // Written atomically: a missing or unreadable one means no page was checkpointed.
    return null;
  }
}

export async function apiIngest(
  input: ApiIngestInput,
  ctx: CoreContext,
  env: ApiIngestEnv,
): Promise<ApiIngestResult> {
  const started = Date.now();
  const src = httpSource(env, input.source);
  const secrets = sourceSecrets(src).flatMap((s) => [s, encodeURIComponent(s)]);
  const mask = (t: string): string => redact(t, secrets);
  if (input.method === 'GET' && input.body !== undefined) {
    throw new DataInputError('body: a GET request has no body (use method POST)');
  }
  const partial = partialPath(input.output);
  const cpFile = checkpointPath(input.output);
  const fp = fingerprint(input);

  let cp = await readCheckpoint(cpFile);
  if (cp && cp.fingerprint !== fp) {
    ctx.log('api_ingestion: a checkpoint of another request is discarded', { output: input.output });
    cp = null;
  }
  if (cp?.done) {
    // Crashed between renaming the output into place and removing the checkpoint.
    if (await stat(input.output).catch(() => null)) {
      await rm(cpFile, { force: true });
      return cp.done;
    }
    cp = null;
  }
  const partialSize = (await stat(partial).catch(() => null))?.size;
  if (cp && (partialSize === undefined || partialSize < cp.bytes)) cp = null;

  const fh: FileHandle = await open(partial, cp ? 'r+' : 'w');
  const resumedAt = cp ? cp.pages : 0;
  let next: Next | null = cp ? cp.next : firstPage(input.pagination);
  let pages = cp?.pages ?? 0;
  let records = cp?.records ?? 0;
  let bytes = cp?.bytes ?? 0;
  if (cp) {
    // Anything after the checkpointed length is a page whose checkpoint was never written.
    await fh.truncate(cp.bytes);
    ctx.log('api_ingestion: resuming after the last page written', { pages, records });
  }

  const client = new HttpClient({
    requestsPerSecond: minDefined(input.requests_per_second, src.requestsPerSecond),
    timeoutMs: Math.min(input.timeout_ms ?? Infinity, src.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    maxRetries: input.max_retries,
    maxRetryAfterMs: input.max_retry_after_ms,
    signal: ctx.signal,
    mask,
    log: ctx.log,
    ...(env.random ? { random: env.random } : {}),
  });

  try {
    while (next && (input.max_pages === undefined || pages < input.max_pages)) {
      throwIfAborted(ctx.signal, 'api_ingestion');
      const { url, init, what } = buildRequest(src, input, next, mask);
      const res = await client.request(url, init, what);
      let body: unknown;
      try {
        body = JSON.parse(res.text);
      } catch {
        throw new DataJobError(
          'HttpBodyError',
          `${what}: the answer is not JSON: ${mask(res.text.slice(0, 200))}`,
          {
            retryable: false,
          },
        );
      }
      const items = valueAt(body, input.records_path);
      if (!Array.isArray(items)) {
        throw new DataJobError(
          'HttpBodyError',
          `${what}: records_path "${input.records_path}" holds ${items === undefined ? 'nothing' : typeof items}, not an array of records`,
          { retryable: false },
        );
      }
      let text = '';
      items.forEach((r, i) => {
        if (r === null || typeof r !== 'object' || Array.isArray(r)) {
          throw new DataJobError('HttpBodyError', `${what}: record ${i} is not a JSON object`, {
            retryable: false,
          });
        }
        text += JSON.stringify(r) + '\n';
      });
      const after = nextOf(input, next, body, res.headers, items.length, url, what, Object.keys(src.query));
      if (text) {
        const buf = Buffer.from(text);
        await fh.write(buf, 0, buf.length, bytes);
        await fh.sync();
        bytes += buf.length;
      }
      pages += 1;
      records += items.length;
      await writeFileAtomic(
        cpFile,
        JSON.stringify({
          v: 1,
          fingerprint: fp,
          next: after ?? {},
          pages,
          records,
          bytes,
        } satisfies Checkpoint),
      );
      ctx.progress(
        input.max_pages ? Math.min(99, Math.floor((100 * pages) / input.max_pages)) : 0,
        `${pages} pages, ${records} records`,
      );
      next = after;
    }
    await fh.truncate(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  const result: ApiIngestResult = {
    source: input.source,
    output: input.output,
    pages,
    records,
    requests: client.stats.requests,
    retries: client.stats.retries,
    bytes_written: bytes,
    resumed_at_page: resumedAt,
    duration_ms: Date.now() - started,
  };
  await writeFileAtomic(
    cpFile,
    JSON.stringify({
      v: 1,
      fingerprint: fp,
      next: {},
      pages,
      records,
      bytes,
      done: result,
    } satisfies Checkpoint),
  );
  await renameIntoPlace(partial, input.output);
  await rm(cpFile, { force: true });
  ctx.progress(100, `${pages} pages, ${records} records`);
  return result;
}

function minDefined(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.min(a, b);
}

function firstPage(p: Pagination): Next {
  return p.style === 'page' ? { page: p.first_page } : {};
}

function buildRequest(
  src: HttpSourceSettings,
  input: ApiIngestInput,
  next: Next,
  mask: (t: string) => string,
): { url: URL; init: RequestInit; what: string } {
  const base = new URL(src.baseUrl.endsWith('/') ? src.baseUrl : `${src.baseUrl}/`);
  let url: URL;
  if (next.url) {
    url = new URL(next.url);
  } else {
    url = new URL(input.path.replace(/^\/+/, ''), base);
    for (const [k, v] of Object.entries(input.query ?? {})) url.searchParams.set(k, String(v));
  }
  const body: Record<string, unknown> | undefined = input.body ? { ...input.body } : undefined;
  const put = (where: 'query' | 'body', k: string, v: string | number): void => {
    if (where === 'body' && body) body[k] = v;
    else url.searchParams.set(k, String(v));
  };
  const p = input.pagination;
  if (p.style === 'page' && next.page !== undefined) {
    put(p.in, p.page_param, next.page);
    put(p.in, p.size_param, p.size);
  } else if (p.style === 'cursor' && next.cursor !== undefined) {
    put(p.in, p.cursor_param, next.cursor);
  }
  const shown = `${input.method} ${url.pathname}${url.search}`;
  for (const [k, v] of Object.entries(src.query)) url.searchParams.set(k, v);
  const headers: Record<string, string> = { accept: 'application/json', ...src.headers };
  if (input.method === 'POST') headers['content-type'] = 'application/json';
  return {
    url,
    init: {
      method: input.method,
      headers,
      ...(input.method === 'POST' ? { body: JSON.stringify(body ?? {}) } : {}),
    },
    what: mask(shown),
  };
}

/** The `rel="next"` URL of a Link header (RFC 8288), resolved against the request's URL. */
export function linkNext(header: string | null, base: URL): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (!m) continue;
    const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))/i.exec(m[2]!);
    const rels = (rel?.[1] ?? rel?.[2] ?? '').toLowerCase().split(/\s+/);
    if (rels.includes('next')) return new URL(m[1]!, base).toString();
  }
  return undefined;
}

function nextOf(
  input: ApiIngestInput,
  now: Next,
  body: unknown,
  headers: Headers,
  count: number,
  url: URL,
  what: string,
  secretParams: readonly string[],
): Next | null {
  const p = input.pagination;
  switch (p.style) {
    case 'none':
      return null;
    case 'page':
      // An empty page, or one short of the size, is the last.
      return count < p.size ? null : { page: now.page! + 1 };
    case 'cursor': {
      const c = valueAt(body, p.cursor_path);
      if (c === undefined || c === null || c === '' || count === 0) return null;
      if (typeof c !== 'string' && typeof c !== 'number') {
        throw new DataJobError(
          'HttpBodyError',
          `${what}: cursor_path "${p.cursor_path}" holds ${typeof c}, not a cursor`,
          {
            retryable: false,
          },
        );
      }
      if (String(c) === now.cursor) {
        throw new DataJobError('HttpBodyError', `${what}: the server gives the same cursor again (a loop)`, {
          retryable: false,
        });
      }
      return { cursor: String(c) };
    }
    case 'link': {
      const n = linkNext(headers.get('link'), url);
      if (!n) return null;
      if (new URL(n).origin !== url.origin) {
        // The source's headers (credentials) go only to its own server.
        throw new DataJobError(
          'HttpBodyError',
          `${what}: the next page's link leaves the source's server (${new URL(n).origin})`,
          {
            retryable: false,
          },
        );
      }
      // The source's query values (API keys) are added to each request, never kept in the checkpoint.
      const kept = new URL(n);
      for (const k of secretParams) kept.searchParams.delete(k);
      return { url: kept.toString() };
    }
  }
}
