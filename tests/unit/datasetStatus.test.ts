/**
 * The legacy status mapping (pure): every job lifecycle of every legacy type, run through
 * statusesFor from `submitted`, gives a path the legacy table allows; and the newer-job guard.
 */
import { describe, expect, it } from 'vitest';
import {
  LEGACY_VOCABULARY,
  mayReplace,
  statusesFor,
  vocabularyOf,
  type StatusVocabulary,
} from '../../src/datasets/legacyStatus.js';
import type { JobState } from '../../src/types.js';
import { loadConfig } from '../../src/config/load.js';
import { illegalEdges, LEGACY_PATHS } from '../fixtures/legacy/statusTable.js';

type Step = [JobState | null, JobState];

/** The dataset's statuses after `start`, for a job making `steps`, followed by `next` stages. */
function walk(v: StatusVocabulary | null, steps: Step[], next: (StatusVocabulary | null)[] = []): string[] {
  const path = ['submitted'];
  for (const [from, to] of steps)
    for (const s of statusesFor(v, { from, to }, { next })) if (s !== path[path.length - 1]) path.push(s);
  return path;
}

const RUN_OK: Step[] = [
  [null, 'queued'],
  ['queued', 'running'],
  ['running', 'completed'],
];
const RUN_RETRY_FAIL: Step[] = [
  [null, 'queued'],
  ['queued', 'running'],
  ['running', 'retrying'],
  ['retrying', 'running'],
  ['running', 'failed'],
  ['failed', 'queued'], // operator retry
  ['queued', 'running'],
  ['running', 'queued'], // requeued at shutdown
  ['queued', 'running'],
  ['running', 'completed'],
];

describe('legacy dataset status mapping', () => {
  it('gives the usual legacy paths for the legacy chains', () => {
    const sync = LEGACY_VOCABULARY.google_sync!;
    const conv = LEGACY_VOCABULARY.dataset_conversion!;
    const unzip = LEGACY_VOCABULARY.file_extraction!;
    const syncPath = walk(sync, RUN_OK, [conv]);
    const convSteps: Step[] = [[null, 'waiting'], ['waiting', 'queued'], ...RUN_OK.slice(1)];
    const both = [...syncPath, ...walk(conv, convSteps).slice(1)].filter((s, i, a) => s !== a[i - 1]);
    expect(both).toEqual(LEGACY_PATHS.syncConvert);
    const unzipBoth = [...walk(unzip, RUN_OK, [conv]), ...walk(conv, convSteps).slice(1)].filter(
      (s, i, a) => s !== a[i - 1],
    );
    expect(unzipBoth).toEqual(LEGACY_PATHS.unzipConvert);
    expect(walk(LEGACY_VOCABULARY.file_upload!, RUN_OK)).toEqual(LEGACY_PATHS.upload);
    // The issue's own words for a google_sync job: queued, running, failed for good.
    const failedForGood: Step[] = [
      [null, 'queued'],
      ['queued', 'running'],
      ['running', 'failed'],
    ];
    expect(walk(sync, failedForGood, [conv])).toEqual(['submitted', 'sync queued', 'syncing', 'sync error']);
  });

  it('keeps every legacy type on legal edges through retries, failures, operator retries and requeues', () => {
    for (const [type, v] of Object.entries(LEGACY_VOCABULARY)) {
      const path = walk(v, RUN_RETRY_FAIL);
      // As the last stage, sync and unzip end `syncing → done` / `unzipping → done`: the legacy
      // chains always converted after them, so the table has no such row (docs/datasets.md).
      expect(path.slice(-2)).toEqual([v.running, 'done']);
      // Nothing in the legacy table leads into `zipping` (but its own error): its first edge is free.
      const checked = type === 'data_compression' ? path.slice(1, -1) : path.slice(0, -1);
      expect(illegalEdges(checked), `${type}: ${path.join(' → ')}`).toEqual([]);
      expect(path).toContain(v.error);
      const cancelled = walk(v, [
        [null, 'queued'],
        ['queued', 'running'],
        ['running', 'cancelled'],
      ]);
      expect(illegalEdges(type === 'data_compression' ? cancelled.slice(1) : cancelled), type).toEqual([]);
      expect(cancelled[cancelled.length - 1]).toBe(v.error);
    }
  });

  it('leaves the status alone for waiting jobs, dependency failures and types outside the table', () => {
    const conv = LEGACY_VOCABULARY.dataset_conversion!;
    expect(statusesFor(conv, { from: 'waiting', to: 'failed' }, { next: [] })).toEqual([]);
    expect(statusesFor(conv, { from: 'waiting', to: 'cancelled' }, { next: [] })).toEqual([]);
    expect(statusesFor(conv, { from: 'running', to: 'waiting' }, { next: [] })).toEqual([]);
    expect(vocabularyOf({ type: 'backup_creation' })).toBeNull();
    expect(statusesFor(null, { from: 'running', to: 'completed' }, { next: [] })).toEqual([]);
    // A pipeline may give another type a legacy vocabulary.
    expect(vocabularyOf({ type: 'remote_sync', tags: ['dataset-status:google_sync'] })).toBe(
      LEGACY_VOCABULARY.google_sync,
    );
  });

  it('never lets a transition replace a status set by a newer job or a later transition', () => {
    const t0 = new Date('2026-01-01T00:00:00Z');
    const t1 = new Date('2026-01-01T00:00:01Z');
    const set = (jobId: string, created: Date, seq: number, at: Date) => ({
      jobId,
      jobCreatedAt: created,
      seq,
      at,
    });
    expect(mayReplace(null, set('a', t0, 1, t0))).toBe(true);
    // an older job against a newer one, whatever the times of their transitions
    expect(mayReplace(set('b', t1, 1, t0), set('a', t0, 9, t1))).toBe(false);
    expect(mayReplace(set('a', t0, 9, t1), set('b', t1, 1, t0))).toBe(true);
    // the same job: only a later transition
    expect(mayReplace(set('a', t0, 3, t1), set('a', t0, 3, t1))).toBe(false);
    expect(mayReplace(set('a', t0, 3, t1), set('a', t0, 2, t1))).toBe(false);
    expect(mayReplace(set('a', t0, 3, t0), set('a', t0, 4, t0))).toBe(true);
    // stages of one pipeline (created together): by the time of the transition
    expect(mayReplace(set('a', t0, 5, t1), set('b', t0, 2, t0))).toBe(false);
    expect(mayReplace(set('a', t0, 5, t0), set('b', t0, 2, t1))).toBe(true);
  });

  it('reads the datasets settings with their defaults, and names a bad key, its value and what is allowed', () => {
    const d = loadConfig({ env: {}, overrides: {} }).datasets!;
    expect(d).toMatchObject({ collection: 'visstoredatas', inDataDir: 'upload', outDataDir: 'converted' });
    expect(() =>
      loadConfig({
        env: {},
        overrides: {
          datasets: { pipelines: { x: { stages: [{ type: 'remote_sync', statusAs: 'rsync' }] } } },
        },
      }),
    ).toThrow(
      'datasets.pipelines.x.stages.0.statusAs = "rsync" is not allowed: must be a legacy job type: google_sync',
    );
  });
});
