/**
 * jobctl cleanup as a subprocess: dry-run and real counts agree; unfinished jobs, jobs of an unfinished
 * workflow and a finished dependency of a waiting job survive; events and log files go with their jobs.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { run, tempDir, writeSettings } from '../cli/proc.js';
import { insertJobs, jobDoc } from './jobDocs.js';

let t: TestDb;
beforeEach(async () => {
  t = await openTestDb('cleanup');
});
afterEach(async () => {
  await t.close();
});

const DAY = 86_400_000;

describe('jobctl cleanup', () => {
  it('dry run and real run agree; unfinished jobs and protected finished jobs survive', async () => {
    const dir = tempDir('cleanup');
    const logDir = join(dir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const settings = writeSettings({ mongoUri: t.uri, database: t.dbName, dataDir: dir, logDir }, dir);
    const now = Date.now();
    const old = new Date(now - 40 * DAY);
    const oldFinished = Array.from({ length: 25 }, (_, i) =>
      jobDoc({
        state: (['completed', 'failed', 'cancelled'] as const)[i % 3],
        createdAt: old,
        finishedAt: old,
      }),
    );
    const recent = [jobDoc({ state: 'completed', finishedAt: new Date(now - DAY) })];
    const unfinished = [
      jobDoc({ state: 'queued', createdAt: old }),
      jobDoc({ state: 'running', createdAt: old, startedAt: old }),
      jobDoc({ state: 'retrying', createdAt: old }),
    ];
    const wfDone = jobDoc({ state: 'completed', finishedAt: old, workflowId: 'wf-open' });
    const wfOpen = jobDoc({ state: 'queued', workflowId: 'wf-open' });
    const dependency = jobDoc({ state: 'completed', finishedAt: old });
    const dependent = jobDoc({ state: 'waiting', dependsOn: [dependency._id] });
    await insertJobs(t.db, [...oldFinished, ...recent, ...unfinished, wfDone, wfOpen, dependency, dependent]);
    await t.db
      .collection('job_events')
      .insertMany(
        oldFinished.map((j) => ({ jobId: j._id, from: null, to: j.state, at: old, attempt: 0 })) as never[],
      );
    for (const j of oldFinished) writeFileSync(join(logDir, `${j._id as string}.log`), 'log\n');

    const dry = await run('jobctl', [
      'cleanup',
      '--older-than',
      '30d',
      '--dry-run',
      '--json',
      '--batch-size',
      '7',
      '--settings',
      settings,
    ]);
    expect(dry.code, dry.stderr).toBe(0);
    const d = JSON.parse(dry.stdout) as { jobs: number; events: number; kept: number };
    expect(d).toMatchObject({ jobs: 25, events: 25, kept: 2 });
    expect(await t.db.collection('jobs').countDocuments()).toBe(33);

    const real = await run('jobctl', [
      'cleanup',
      '--older-than',
      '30d',
      '--json',
      '--batch-size',
      '7',
      '--settings',
      settings,
    ]);
    expect(real.code, real.stderr).toBe(0);
    expect(JSON.parse(real.stdout)).toMatchObject({ jobs: d.jobs, events: d.events, kept: d.kept });
    const left = new Set(
      (
        await t.db
          .collection('jobs')
          .find({}, { projection: { _id: 1 } })
          .toArray()
      ).map((j) => j._id as unknown as string),
    );
    for (const j of [...recent, ...unfinished, wfDone, wfOpen, dependency, dependent])
      expect(left.has(j._id as string)).toBe(true);
    for (const j of oldFinished) {
      expect(left.has(j._id as string)).toBe(false);
      expect(existsSync(join(logDir, `${j._id as string}.log`))).toBe(false);
    }
    expect(await t.db.collection('job_events').countDocuments()).toBe(0);

    // --state and --type narrow it; a second run finds nothing.
    const again = await run('jobctl', [
      'cleanup',
      '--older-than',
      '30d',
      '--state',
      'completed',
      '--json',
      '--settings',
      settings,
    ]);
    expect(JSON.parse(again.stdout)).toMatchObject({ jobs: 0 });
  });

  it('refuses a bad age or state with exit 2', async () => {
    const bad = await run('jobctl', [
      'cleanup',
      '--older-than',
      'soon',
      '--mongo-uri',
      t.uri,
      '--database',
      t.dbName,
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('duration');
    const state = await run('jobctl', [
      'cleanup',
      '--older-than',
      '1d',
      '--state',
      'queued',
      '--mongo-uri',
      t.uri,
      '--database',
      t.dbName,
    ]);
    expect(state.code).toBe(2);
    expect(state.stderr).toContain('not a finished state');
  });
});
