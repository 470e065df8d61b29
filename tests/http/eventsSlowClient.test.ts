/**
 * A client of GET /api/events that stops reading is dropped, never buffered without bound: a raw
 * socket connects and stops reading while transitions keep coming. The server's buffer for it (the
 * socket's writableLength, sampled all along) stays within http.eventBufferBytes plus an event or two,
 * the server closes it after http.eventSlowClientMs over that bound, a client reading meanwhile gets
 * every event in order without waiting on the slow one, before the drop and after it, and the dropped
 * client, reading what reached it and coming back with its last id, misses nothing.
 *
 * The API listens on a Unix socket here: loopback TCP lets the kernel queue megabytes for an unread
 * socket (send-buffer autotuning), a Unix socket about 200 KB, so the bound is reached after a
 * thousand or so transitions instead of tens of thousands. jobd's own buffering is the same on both.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { loadConfig } from '../../src/config/load.js';
import { buildHttpApp } from '../../src/http/server.js';
import type { App } from '../../src/http/routes/route.js';
import { waitUntil } from '../helpers/waitFor.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const BUFFER_BYTES = 1024;
const SLOW_CLIENT_MS = 1_000;
/** The bound plus the event written when it was crossed and the closing `error` event. */
const MAX_BUFFERED = BUFFER_BYTES + 4096;

let f: StoreFixture;
let app: App;
let client: JobdClient;
let dir: string;
let sock: string;

beforeAll(async () => {
  f = await openStoreFixture('http_events_slow');
  const config = loadConfig({
    env: {},
    overrides: {
      mongoUri: f.t.uri,
      database: f.t.dbName,
      http: { port: 0, eventBufferBytes: BUFFER_BYTES, eventSlowClientMs: SLOW_CLIENT_MS },
      logLevel: 'warn',
    },
  });
  app = await buildHttpApp({
    config,
    store: f.store,
    logger: pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' }),
  });
  dir = mkdtempSync(join(tmpdir(), 'jobd-events-slow-'));
  sock = join(dir, 'api.sock');
  await app.listen({ path: sock });
  client = JobdClient.over(f.store, { mongoUri: f.t.uri, database: f.t.dbName, jobTypes: config.jobTypes });
});

afterAll(async () => {
  await app?.close();
  await f?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Block {
  id: string | null;
  event: string;
  data: string;
  /** When its last byte arrived (Date.now()). */
  at: number;
}

/**
 * A raw HTTP/1.0 client of /api/events (so the body is the bare stream, not chunked), resolved once the
 * server has opened its change stream (the `: connected` comment): only transitions made after that
 * are the client's. `blocks()` parses the complete SSE blocks received so far, each with the time its
 * last byte arrived; `pause()` stops reading (the kernel's buffers, then the server's, fill up).
 */
async function rawEvents(headers: Record<string, string> = {}) {
  const s = connect({ path: sock });
  await new Promise<void>((resolve, reject) => s.once('connect', resolve).once('error', reject));
  const chunks: Buffer[] = [];
  const arrivals: { end: number; at: number }[] = [];
  let bytes = 0;
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  let onData: () => void = () => {};
  s.on('data', (c: Buffer) => {
    chunks.push(c);
    bytes += c.length;
    arrivals.push({ end: bytes, at: Date.now() });
    onData();
  });
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  s.write(`GET /api/events HTTP/1.0\r\nAccept: text/event-stream\r\n${lines.join('')}\r\n`);
  await new Promise<void>((resolve, reject) => {
    onData = () => {
      if (Buffer.concat(chunks).includes('\n: connected\n')) resolve();
    };
    void closed.then(() =>
      reject(new Error(`the stream closed before it was established: ${Buffer.concat(chunks).toString()}`)),
    );
  });
  onData = () => {};
  return {
    socket: s,
    closed,
    pause: () => s.pause(),
    resume: () => s.resume(),
    blocks(): Block[] {
      const raw = Buffer.concat(chunks);
      const start = raw.indexOf('\r\n\r\n') + 4;
      if (start < 4) return [];
      const out: Block[] = [];
      let at = start;
      let a = 0;
      for (;;) {
        const end = raw.indexOf('\n\n', at);
        if (end < 0) break;
        const b = raw.subarray(at, end).toString('utf8');
        while (arrivals[a]!.end < end + 2) a++;
        out.push({
          id: /^id: (.*)$/m.exec(b)?.[1] ?? null,
          event: /^event: (.*)$/m.exec(b)?.[1] ?? '',
          data: /^data: (.*)$/m.exec(b)?.[1] ?? '',
          at: arrivals[a]!.at,
        });
        at = end + 2;
      }
      return out;
    },
  };
}

type Transition = { jobId: string; at: string };
const transitions = (bs: Block[]) =>
  bs.filter((b) => b.event === 'transition').map((b) => ({ ...b, t: JSON.parse(b.data) as Transition }));

describe('GET /api/events with a client that stops reading', () => {
  it('drops it with bounded memory while other clients keep up, and it resumes with Last-Event-ID', async () => {
    const accepted: Socket[] = [];
    const onConnection = (s: Socket) => void accepted.push(s);
    app.server.on('connection', onConnection);
    const fast = await rawEvents();
    const slow = await rawEvents();
    slow.pause(); // reads nothing more until the end of the test
    const side = await waitUntil(() => (accepted.length > 1 ? accepted[1] : undefined), {
      what: 'the server side of the slow socket',
    });
    app.server.off('connection', onConnection);

    let maxBuffered = 0;
    let stallStart: number | null = null;
    let closedAt: number | null = null;
    side.once('close', () => (closedAt = Date.now()));
    const sampler = setInterval(() => {
      if (side.destroyed) return;
      maxBuffered = Math.max(maxBuffered, side.writableLength);
      if (stallStart === null && side.writableLength > BUFFER_BYTES) stallStart = Date.now();
    }, 2);

    // Transitions (inserts) in batches until the server gives up on the slow client: first the
    // kernel's socket buffers fill, then jobd's, then the client stays over the bound.
    const ids: string[] = [];
    const later = new Date(Date.now() + 3_600_000);
    while (closedAt === null && ids.length < 20_000) {
      const batch = await client.enqueueMany(
        Array.from({ length: 50 }, (_, n) => ({ type: 'echo', params: { n }, options: { runAt: later } })),
      );
      ids.push(...batch.map((r) => r.job._id));
    }
    await waitUntil(() => closedAt !== null, {
      what: 'the server to close the slow client',
      timeoutMs: 60_000,
    });
    clearInterval(sampler);
    expect(stallStart, 'the slow client went over the bound').not.toBeNull();
    expect(maxBuffered).toBeGreaterThan(BUFFER_BYTES);
    expect(maxBuffered).toBeLessThanOrEqual(MAX_BUFFERED);
    // Dropped after it stayed over the bound for eventSlowClientMs, not before.
    expect(closedAt! - stallStart!).toBeGreaterThanOrEqual(SLOW_CLIENT_MS - 10);
    // Transitions made after the drop: the reading client's stream goes on past it.
    const afterDrop = await client.enqueueMany(
      Array.from({ length: 10 }, (_, n) => ({ type: 'echo', params: { n }, options: { runAt: later } })),
    );
    ids.push(...afterDrop.map((r) => r.job._id));

    // The reading client got every transition, in order, and kept getting new ones while the slow
    // one was stuck (transitions made after the stall began reached it before the drop) and after.
    await waitUntil(() => transitions(fast.blocks()).length >= ids.length, {
      what: `${ids.length} transitions on the reading client`,
      timeoutMs: 60_000,
    });
    const got = transitions(fast.blocks());
    expect(got.map((b) => b.t.jobId)).toEqual(ids);
    const duringStall = got.filter((b) => Date.parse(b.t.at) > stallStart! && b.at < closedAt!);
    expect(duringStall.length, 'events made and delivered while the slow client was stuck').toBeGreaterThan(
      0,
    );
    expect(got.slice(-afterDrop.length).every((b) => b.at > closedAt!)).toBe(true);

    // The slow client now reads what reached it: a prefix of the stream, then the end.
    slow.resume();
    await slow.closed;
    const received = transitions(slow.blocks());
    expect(received.length).toBeGreaterThan(0);
    expect(received.length).toBeLessThan(ids.length);
    const first = received.map((b) => b.t.jobId);
    expect(first).toEqual(ids.slice(0, first.length));

    // Back with its last id, it gets the rest: nothing missed, nothing twice.
    const again = await rawEvents({ 'Last-Event-ID': received[received.length - 1]!.id! });
    const rest = ids.length - first.length;
    await waitUntil(() => transitions(again.blocks()).length >= rest, {
      what: `the ${rest} transitions after the last id`,
      timeoutMs: 60_000,
    });
    expect([...first, ...transitions(again.blocks()).map((b) => b.t.jobId)]).toEqual(ids);
    again.socket.destroy();
    fast.socket.destroy();
  }, 180_000);
});
