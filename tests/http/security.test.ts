/**
 * The http settings section and the server's security: clear settings errors that never show a
 * token, reads behind a token with http.authReads, the rate limit on changing routes (429), CORS off
 * by default and on for listed origins only, and no token in any log line.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { startHttpServer, type HttpServer } from '../../src/http/server.js';
import { testConfig } from '../integration/daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const ADMIN = 'sekrit-admin-token-0123456789';
const READ = 'sekrit-read-token-0123456789';

function configError(http: unknown): string {
  try {
    loadConfig({ env: {}, builtins: () => ({}), overrides: { http } });
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a settings error');
}

describe('http settings', () => {
  it('is off unless the section is given, and takes its defaults', () => {
    expect(loadConfig({ env: {}, builtins: () => ({}) }).http).toBeNull();
    expect(loadConfig({ env: {}, builtins: () => ({}), overrides: { http: false } }).http).toBeNull();
    const on = loadConfig({ env: {}, builtins: () => ({}), overrides: { http: { tokens: [ADMIN] } } }).http!;
    expect(on).toMatchObject({ host: '127.0.0.1', port: 19000, authReads: false, corsOrigins: [] });
    expect(on.tokens).toEqual([{ token: ADMIN, role: 'admin' }]);
  });

  it('names the key and what is allowed, and never shows a token', () => {
    expect(configError({ port: 70000 })).toContain(
      'http.port = 70000 is not allowed: must be an integer from 0 to 65535',
    );
    const short = configError({ tokens: ['short-secret'] });
    expect(short).toContain('http.tokens.0');
    expect(short).toContain('at least 16 characters');
    expect(short).not.toContain('short-secret');
    const role = configError({ tokens: [{ token: ADMIN, role: 'root' }] });
    expect(role).not.toContain(ADMIN);
    expect(configError({ host: '0.0.0.0' })).toContain(
      'http.host = "0.0.0.0" is not allowed: a server reachable',
    );
    expect(configError({ prot: 1 })).toContain('did you mean "http.port"');
  });
});

describe('http security', () => {
  let f: StoreFixture;
  let server: HttpServer;
  let cors: HttpServer;
  const lines: string[] = [];

  beforeAll(async () => {
    f = await openStoreFixture('http_security');
    const base: ResolvedConfig = testConfig(f);
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ level: 'trace' }, sink);
    const http = {
      host: '127.0.0.1',
      port: 0,
      tokens: [
        { token: ADMIN, role: 'admin' as const },
        { token: READ, role: 'read' as const },
      ],
      authReads: true,
      bodyLimitBytes: 64 * 1024,
      rateLimit: { max: 3, windowMs: 60_000 },
      corsOrigins: [],
      metricsCacheMs: 1000,
    };
    server = await startHttpServer({ config: base, http, store: f.store, logger });
    cors = await startHttpServer({
      config: base,
      http: { ...http, authReads: false, corsOrigins: ['https://ops.example.org'] },
      store: f.store,
      logger,
    });
  });

  afterAll(async () => {
    await server?.close();
    await cors?.close();
    await f?.close();
  });

  const get = (url: string, token?: string, headers: Record<string, string> = {}) =>
    fetch(url, { headers: { ...headers, ...(token ? { authorization: `Bearer ${token}` } : {}) } });

  it('with authReads, reads need a token too (health stays open)', async () => {
    expect((await get(`${server.url}/api/jobs/`)).status).toBe(401);
    expect((await get(`${server.url}/metrics`)).status).toBe(401);
    expect((await get(`${server.url}/openapi.json`)).status).toBe(401);
    expect((await get(`${server.url}/api/jobs/`, 'x'.repeat(30))).status).toBe(403);
    expect((await get(`${server.url}/api/jobs/`, READ)).status).toBe(200);
    expect((await get(`${server.url}/metrics`, READ)).status).toBe(200);
    expect((await get(`${server.url}/api/health`)).status).toBe(200);
  });

  it('rate-limits changing routes with 429 as problem+json, not reads', async () => {
    const post = () =>
      fetch(`${server.url}/api/jobs/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'noop', runAt: new Date(Date.now() + 3_600_000).toISOString() }),
      });
    const codes: number[] = [];
    for (let i = 0; i < 4; i++) codes.push((await post()).status);
    expect(codes).toEqual([201, 201, 201, 429]);
    const limited = await post();
    expect(limited.headers.get('content-type')).toContain('application/problem+json');
    for (let i = 0; i < 5; i++) expect((await get(`${server.url}/api/jobs/`, READ)).status).toBe(200);
  });

  it('sends no CORS headers unless origins are listed', async () => {
    const origin = { origin: 'https://ops.example.org' };
    const off = await get(`${server.url}/api/health`, undefined, origin);
    expect(off.headers.get('access-control-allow-origin')).toBeNull();
    const on = await get(`${cors.url}/api/health`, undefined, origin);
    expect(on.headers.get('access-control-allow-origin')).toBe('https://ops.example.org');
    const other = await get(`${cors.url}/api/health`, undefined, { origin: 'https://evil.example' });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('never logs a token', () => {
    expect(lines.length).toBeGreaterThan(0);
    const all = lines.join('');
    expect(all).not.toContain(ADMIN);
    expect(all).not.toContain(READ);
  });
});
