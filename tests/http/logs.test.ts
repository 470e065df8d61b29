/**
 * Logs from any host: two daemons with their own data dirs (no shared filesystem between them). Daemon
 * A runs the jobs; daemon B, which cannot run them, serves the HTTP API. A job's full log (far past the
 * tail kept on the job) is read through B's GET /api/jobs/{id}/logs (also following it while the job
 * runs) and through jobctl with settings of a third data dir; credentials printed by the job are
 * stored redacted; a log past worker.logStoreBytes ends with a truncated marker; cleanup deletes the
 * chunks with the job.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import type { ResolvedConfig } from '../../src/config/types.js';
import { cleanupJobs } from '../../src/ops/cleanup.js';
import { redact } from '../../src/redact.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { run, writeSettings } from '../cli/proc.js';
import { testConfig } from '../integration/daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from '../integration/store-helpers.js';

const handler = fileURLToPath(new URL('../fixtures/handlers/logLines.ts', import.meta.url));
const SECRET_URI = 'mongodb://alice:s3cretPw@db.example.org:27017/jobs';
const STORE_BYTES = 64 * 1024;
const logger = pino({ level: process.env.JOBD_TEST_LOG ?? 'silent' });

let f: StoreFixture;
let a: Daemon;
let b: Daemon;
let configA: ResolvedConfig;
let configB: ResolvedConfig;
let base = '';
let client: JobdClient;

async function logOverHttp(
  id: string,
  follow = false,
): Promise<{ status: number; text: string; source: string | null }> {
  const r = await fetch(`${base}/api/jobs/${id}/logs${follow ? '?follow=1' : ''}`);
  return { status: r.status, text: await r.text(), source: r.headers.get('x-jobd-log-source') };
}

function jobctl(args: string[]) {
  // A data dir of its own: jobctl finds no log file here, only what the database holds.
  const settings = writeSettings({ dataDir: './var' });
  return run('jobctl', [...args, '--settings', settings, '--mongo-uri', f.t.uri, '--database', f.t.dbName]);
}

beforeAll(async () => {
  f = await openStoreFixture('http_logs');
  configA = testConfig(f, {
    worker: { logStoreBytes: STORE_BYTES, logShipMs: 50, logTailBytes: 1024 },
    jobTypes: { loglines: { handler } },
  });
  // B knows no loglines type, so it never claims those jobs: it only serves the API.
  configB = {
    ...testConfig(f),
    http: {
      host: '127.0.0.1',
      port: 0,
      tokens: [],
      authReads: false,
      bodyLimitBytes: 64 * 1024,
      rateLimit: null,
      corsOrigins: [],
      metricsCacheMs: 0,
    },
  };
  expect(configB.logDir).not.toBe(configA.logDir);
  [a, b] = await Promise.all([
    startDaemon({ config: configA, logger }),
    startDaemon({ config: configB, logger }),
  ]);
  base = b.httpUrl!;
  client = JobdClient.over(f.store, { mongoUri: f.t.uri, database: f.t.dbName });
});

afterAll(async () => {
  await Promise.all([a?.stop({ graceMs: 0 }), b?.stop({ graceMs: 0 })]);
  await f?.close();
});

describe('job logs from any host', () => {
  it("reads a job's whole log through the other daemon's HTTP API and jobctl, following it while it runs", async () => {
    const { job } = await client.enqueue('loglines', { lines: 400, pauseMs: 30, secretUri: SECRET_URI });
    // Started before the job has printed anything; ends when the job has finished.
    const followed = logOverHttp(job._id, true);
    const done = await client.waitFor(job._id, { timeoutMs: 120_000 });
    expect(done.state).toBe('completed');
    expect(done.lease).toBeFalsy();

    const file = readFileSync(join(configA.logDir, `${job._id}.log`), 'utf8');
    expect(existsSync(join(configB.logDir, `${job._id}.log`))).toBe(false);
    expect(file).toContain(SECRET_URI);
    const want = redact(file);
    expect(want).not.toContain('s3cretPw');
    expect(want).toContain('connecting to mongodb://***@db.example.org:27017/jobs');
    expect(want.length).toBeGreaterThan(30_000); // far past the 1 KiB tail kept on the job

    const got = await logOverHttp(job._id);
    expect(got.status).toBe(200);
    expect(got.source).toBe('database');
    expect(got.text).toBe(want);
    const f1 = await followed;
    expect(f1.status).toBe(200);
    expect(f1.text).toBe(want);

    const ctl = await jobctl(['logs', job._id]);
    expect(ctl.code, ctl.stderr).toBe(0);
    expect(ctl.stdout).toBe(want);
    const ctlFollow = await jobctl(['logs', job._id, '--follow']);
    expect(ctlFollow.code, ctlFollow.stderr).toBe(0);
    expect(ctlFollow.stdout).toBe(want);
  });

  it('cuts a log at worker.logStoreBytes with a marker, and cleanup deletes the chunks with the job', async () => {
    const { job } = await client.enqueue('loglines', { lines: 1000 });
    expect((await client.waitFor(job._id, { timeoutMs: 120_000 })).state).toBe('completed');
    const got = await logOverHttp(job._id);
    expect(got.status).toBe(200);
    const file = readFileSync(join(configA.logDir, `${job._id}.log`), 'utf8');
    expect(file.length).toBeGreaterThan(STORE_BYTES);
    const [kept, marker] = got.text.split('\n[jobd: log truncated');
    expect(marker).toContain('worker.logStoreBytes');
    expect(Buffer.byteLength(kept!)).toBeLessThanOrEqual(STORE_BYTES);
    expect(file.startsWith(kept!)).toBe(true);
    const json = await jobctl(['logs', job._id, '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ id: job._id, source: 'database', truncated: true });

    const before = await f.store.logs.countDocuments({ jobId: job._id });
    expect(before).toBeGreaterThan(1);
    const totals = await cleanupJobs(f.store, {
      olderThanMs: { completed: 0 },
      logDir: configA.logDir,
      now: new Date(Date.now() + 60_000),
    });
    expect(totals.jobs).toBeGreaterThanOrEqual(2);
    expect(await f.store.logs.countDocuments({})).toBe(0);
    expect((await logOverHttp(job._id)).status).toBe(404);
    const gone = await jobctl(['logs', job._id]);
    expect(gone.code).toBe(3);
  });
});
