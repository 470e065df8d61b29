/**
 * A Last-Event-ID the database can no longer resume from gets 410, never a silent gap: the embedded
 * server (its own durable process) is killed and restarted on the same data directory, after which
 * its change history starts anew, as MongoDB's oplog loses old entries. A resume point from after the
 * restart still works.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { loadConfig } from '../../src/config/load.js';
import { startHttpServer, type HttpServer } from '../../src/http/server.js';
import { openStore, type Store } from '../../src/store/index.js';
import { startEmbeddedProcess, type EmbeddedProcess } from '../helpers/embeddedProcess.js';
import { SseClient } from '../helpers/sse.js';
import { waitUntil } from '../helpers/waitFor.js';

let db: EmbeddedProcess | undefined;
let store: Store | undefined;
let api: HttpServer | undefined;

afterAll(async () => {
  await api?.close();
  await store?.close();
  await db?.stop();
});

describe('GET /api/events resume points', () => {
  it('answers 410 for a resume point older than the change history, and resumes from a newer one', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'jobd-events-history-'));
    db = await startEmbeddedProcess({ dataDir: join(dataDir, 'db') });
    const database = 'jobd_events_history';
    const config = loadConfig({
      env: {},
      overrides: { mongoUri: db.uri, database, dataDir, http: { port: 0 }, logLevel: 'warn' },
    });
    store = await openStore({ mongoUri: db.uri, database, appName: 'jobd test events history' });
    api = await startHttpServer({ config, store, logger: pino({ level: 'silent' }) });
    const client = JobdClient.over(store, { mongoUri: db.uri, database, jobTypes: config.jobTypes });
    const later = new Date(Date.now() + 3_600_000);

    const before = await SseClient.open(`${api.url}/api/events`);
    expect(before.status).toBe(200);
    await client.enqueue('echo', { n: 1 }, { runAt: later });
    await before.until(() => before.events.length >= 1, 'the first transition');
    const oldId = before.events[0]!.id!;
    await before.close();

    const port = db.port;
    await db.kill();
    db = await startEmbeddedProcess({ dataDir: join(dataDir, 'db'), port });
    // The driver finds the server again by itself; the first write that lands shows it has.
    const { job } = await waitUntil(
      () => client.enqueue('echo', { n: 2 }, { runAt: later }).catch(() => undefined),
      {
        what: 'an enqueue after the restart',
        timeoutMs: 60_000,
      },
    );

    const lost = await SseClient.open(`${api.url}/api/events`, { 'last-event-id': oldId });
    expect(lost.status).toBe(410);
    expect(lost.headers.get('content-type')).toContain('application/problem+json');
    expect(JSON.parse(lost.body).detail).toContain('no longer in the database change history');

    // A point after the restart resumes: the next transition arrives, nothing before it.
    const now = await SseClient.open(`${api.url}/api/events`);
    await client.runNow(job._id).catch(() => undefined);
    const third = await client.enqueue('echo', { n: 3 }, { runAt: later });
    await now.until(() => now.events.some((e) => e.data.includes(third.job._id)), 'the third job');
    const mark = now.events[0]!.id!;
    await now.close();
    const resumed = await SseClient.open(`${api.url}/api/events`, { 'last-event-id': mark });
    expect(resumed.status).toBe(200);
    const fourth = await client.enqueue('echo', { n: 4 }, { runAt: later });
    await resumed.until(() => resumed.events.some((e) => e.data.includes(fourth.job._id)), 'the fourth job');
    expect(resumed.events.some((e) => e.id === mark)).toBe(false);
    await resumed.close();
  });
});
