/**
 * api_ingestion's core against a real HTTP server on loopback: each pagination style (page/size by GET
 * and POST, cursor, Link header), a rate limit, 429 with Retry-After in seconds and as a date, 5xx and a
 * hung request, secrets never in messages or files, and resumption from the checkpoint without
 * duplicates after an attempt stopped mid-way.
 */
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TabularSource } from '../../src/config/tabular.js';
import { apiIngest, partialPath, type ApiIngestInput } from '../../src/jobs/tabular/lib/apiIngest.js';
import { retryAfterMs } from '../../src/jobs/tabular/lib/httpClient.js';
import { linkNext } from '../../src/jobs/tabular/lib/apiIngest.js';
import { failure, recordingContext } from '../data/helpers.js';
import { startApiServer, type ApiServer } from './apiServer.js';

const TOKEN = 'tok-7f3a9c-secret';
const API_KEY = 'key-91b2-secret';
let dir: string;
const servers: ApiServer[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jobd-apiingest-'));
});
afterAll(async () => {
  for (const s of servers) await s.close();
  await rm(dir, { recursive: true, force: true });
});

async function server(o: Parameters<typeof startApiServer>[0]): Promise<ApiServer> {
  const s = await startApiServer(o);
  servers.push(s);
  return s;
}

function sources(s: ApiServer, extra: Partial<Extract<TabularSource, { kind: 'http' }>> = {}) {
  return {
    api: {
      kind: 'http' as const,
      baseUrl: s.url,
      headers: { Authorization: `Bearer ${TOKEN}` },
      query: { api_key: API_KEY },
      ...extra,
    },
  };
}

function job(name: string, over: Partial<ApiIngestInput>): ApiIngestInput {
  return {
    source: 'api',
    path: '',
    method: 'GET',
    records_path: '',
    pagination: { style: 'none' },
    max_retries: 5,
    max_retry_after_ms: 60_000,
    output: join(dir, `${name}.ndjson`),
    ...over,
  };
}

async function ids(path: string): Promise<number[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => (JSON.parse(l) as { id: number }).id);
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe('api_ingestion: pagination', () => {
  it('page/size (GET), cursor and Link header each fetch every record exactly once', async () => {
    const s = await server({ total: 53, token: TOKEN });
    const env = { sources: sources(s) };
    const page = await apiIngest(
      job('page', {
        path: '/page',
        records_path: 'data.items',
        pagination: {
          style: 'page',
          page_param: 'page',
          size_param: 'per_page',
          size: 10,
          first_page: 1,
          in: 'query',
        },
      }),
      recordingContext(),
      env,
    );
    expect(page).toMatchObject({ pages: 6, records: 53, requests: 6, retries: 0, resumed_at_page: 0 });
    expect(await ids(page.output)).toEqual(range(53));
    const cursor = await apiIngest(
      job('cursor', {
        path: 'cursor',
        records_path: 'items',
        pagination: { style: 'cursor', cursor_path: 'meta.next', cursor_param: 'cursor', in: 'query' },
      }),
      recordingContext(),
      env,
    );
    expect(cursor).toMatchObject({ pages: 8, records: 53 });
    expect(await ids(cursor.output)).toEqual(range(53));
    const link = await apiIngest(
      job('link', { path: 'link', pagination: { style: 'link' } }),
      recordingContext(),
      env,
    );
    expect(link).toMatchObject({ pages: 6, records: 53 });
    expect(await ids(link.output)).toEqual(range(53));
    // Every request carried the source's API key; the checkpoint and partial file are gone.
    expect(s.requests.every((r) => r.url.includes(`api_key=${API_KEY}`))).toBe(true);
    expect((await readdir(dir)).filter((n) => n.includes('jobd-'))).toEqual([]);
  });

  it('page/size by POST with the page in the body; a page exactly full ends on the empty one', async () => {
    const s = await server({ total: 20, token: TOKEN });
    const r = await apiIngest(
      job('post', {
        path: 'search',
        method: 'POST',
        body: { filter: 'all' },
        records_path: '$.data.items',
        pagination: {
          style: 'page',
          page_param: 'page',
          size_param: 'size',
          size: 10,
          first_page: 1,
          in: 'body',
        },
      }),
      recordingContext(),
      { sources: sources(s) },
    );
    expect(r).toMatchObject({ pages: 3, records: 20 });
    expect(await ids(r.output)).toEqual(range(20));
    expect(s.requests.map((q) => q.method)).toEqual(['POST', 'POST', 'POST']);
  });
});

describe('api_ingestion: rate limit, retries and timeouts', () => {
  it('keeps to the rate, waits out 429s (Retry-After in seconds and as a date), retries 5xx and a hang', async () => {
    const s = await server({
      total: 40,
      token: TOKEN,
      minIntervalMs: 80,
      faults: {
        2: { status: 429, retryAfter: 'seconds' },
        4: { status: 503 },
        5: { status: 429, retryAfter: 'date' },
        7: { status: 500 },
        8: { status: 'hang' },
      },
    });
    const ctx = recordingContext();
    const r = await apiIngest(
      job('faults', {
        path: 'page',
        records_path: 'data.items',
        pagination: {
          style: 'page',
          page_param: 'page',
          size_param: 'per_page',
          size: 5,
          first_page: 1,
          in: 'query',
        },
        requests_per_second: 10,
        timeout_ms: 1_000,
      }),
      ctx,
      { sources: sources(s) },
    );
    expect(await ids(r.output)).toEqual(range(40));
    expect(r).toMatchObject({ pages: 9, records: 40, retries: 5, requests: 14 });
    expect(s.rateViolations()).toBe(0);
    // The request after each 429 came no sooner than its Retry-After allowed.
    const after = (n: number) => s.requests[n]!.at - s.requests[n - 1]!.at;
    expect(after(2)).toBeGreaterThanOrEqual(1_000);
    expect(s.requests[5]!.at).toBeGreaterThanOrEqual(s.requests[4]!.at + 500);
    const logged = JSON.stringify(ctx.logs);
    expect(logged).toContain('HTTP 429');
    expect(logged).toContain('no answer within 1000 ms');
    expect(logged).not.toContain(API_KEY);
    expect(logged).not.toContain(TOKEN);
  });

  it('a 4xx other than 429 fails without retries, its message free of secrets', async () => {
    const s = await server({ total: 5, token: TOKEN });
    const e = await failure(
      apiIngest(job('404', { path: 'nowhere' }), recordingContext(), { sources: sources(s) }),
    );
    expect(e.name).toBe('HttpStatusError');
    expect(e.code).toBe('JOBD_DO_NOT_RETRY');
    expect(e.message).toMatch(/GET \/nowhere: HTTP 404/);
    expect(e.message).not.toContain(API_KEY);
    const none = await failure(
      apiIngest(job('x', { source: 'other' }), recordingContext(), { sources: sources(s) }),
    );
    expect(none.message).toContain('"other" is not an http source');
  });

  it('gives up after max_retries with a retryable error', async () => {
    const s = await server({ total: 5, token: TOKEN, faults: { 1: { status: 503 }, 2: { status: 503 } } });
    const e = await failure(
      apiIngest(job('gaveup', { path: 'page', max_retries: 1 }), recordingContext(), { sources: sources(s) }),
    );
    expect(e.name).toBe('HttpRetriesExhaustedError');
    expect(e.code).toBe('JOBD_HTTP_FAILED');
  });

  it('reads Retry-After and Link headers as their RFCs write them', () => {
    expect(retryAfterMs('3', 0)).toBe(3000);
    expect(retryAfterMs('Wed, 21 Oct 2015 07:28:10 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT'))).toBe(
      10_000,
    );
    expect(retryAfterMs('soon', 0)).toBeUndefined();
    const base = new URL('https://api.example.org/v1/items?page=2');
    expect(linkNext('<https://api.example.org/v1/items?page=3>; rel="next", <...>; rel="last"', base)).toBe(
      'https://api.example.org/v1/items?page=3',
    );
    expect(linkNext('</v1/items?page=1>; rel=prev, </v1/items?page=3>; rel="next"', base)).toBe(
      'https://api.example.org/v1/items?page=3',
    );
    expect(linkNext('<x>; rel="last"', base)).toBeUndefined();
  });
});

describe('api_ingestion: resumption', () => {
  /** Ingests 50 records in pages of 10 and stops the attempt while page 4 is being served. */
  async function stoppedMidway(name: string) {
    const s = await server({ total: 50, token: TOKEN });
    const input = job(name, {
      path: 'page',
      records_path: 'data.items',
      pagination: {
        style: 'page',
        page_param: 'page',
        size_param: 'per_page',
        size: 10,
        first_page: 1,
        in: 'query',
      },
    });
    const ctx = recordingContext();
    const arrived = s.hold(30);
    const first = failure(apiIngest(input, ctx, { sources: sources(s) }));
    await arrived;
    ctx.controller.abort(new Error('test stops the attempt'));
    s.release();
    return { s, input, stopped: await first };
  }

  it('an attempt stopped mid-way leaves a checkpoint; the next one resumes after it, no record twice', async () => {
    const { s, input, stopped } = await stoppedMidway('resume');
    expect(stopped.name).toBe('ToolAbortedError');
    const left = await readdir(dir);
    expect(left).toContain('.resume.ndjson.jobd-checkpoint.json');
    const cp = await readFile(join(dir, '.resume.ndjson.jobd-checkpoint.json'), 'utf8');
    expect(cp).not.toContain(API_KEY);
    const r = await apiIngest(input, recordingContext(), { sources: sources(s) });
    expect(r).toMatchObject({ resumed_at_page: 3, pages: 6, records: 50 });
    expect(await ids(r.output)).toEqual(range(50));
    // The second attempt asked for page 4 first.
    const pagesAsked = s.requests.map((q) => new URL(q.url, 'http://x').searchParams.get('page'));
    expect(pagesAsked).toEqual(['1', '2', '3', '4', '4', '5', '6']);
  });

  it('a page written but not checkpointed (a crash between the two) is cut off, not written twice', async () => {
    const { s, input } = await stoppedMidway('torn');
    // As if page 4 and part of page 5 reached the file and the process died before the checkpoint.
    const page4 = range(10).map((i) => JSON.stringify({ id: 30 + i, name: `r${30 + i}` }) + '\n');
    await appendFile(partialPath(input.output), page4.join('') + '{"id":41,"na');
    const r = await apiIngest(input, recordingContext(), { sources: sources(s) });
    expect(r).toMatchObject({ resumed_at_page: 3, pages: 6, records: 50 });
    expect(await ids(r.output)).toEqual(range(50));
  });
});
