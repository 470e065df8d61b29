/**
 * Session importers: the parsers on synthetic EPU, SerialEM and Leginon sessions (and malformed files),
 * then session_import in a real daemon (one shared by the cases): each exposure gets its chain of jobs
 * with the right params; watch mode picks up an exposure written after it started; a SIGKILL of the
 * daemon mid-import creates nothing twice. The kernel types are stood in for by a fixture handler: the
 * chain and its params are what is under test, not the kernels.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { ImageFormatError } from '../../src/imaging/errors.js';
import {
  exposureJobs,
  leginonExposures,
  mdocExposures,
  parseEpuXml,
  parseMdoc,
  scanSession,
  type Exposure,
} from '../../src/imaging/sessions/index.js';
import type { JobDoc } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  killAllDaemons,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
  type DaemonSettings,
} from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import {
  epuXml,
  fixtureExposures,
  mdocText,
  writeEpuSession,
  writeLeginonSession,
  writeSerialemExposure,
  writeSerialemSession,
  type FixtureExposure,
} from '../fixtures/sessions/makeSessions.js';

const ROOT = resolve(import.meta.dirname, '../..');
const STAND_IN = join(ROOT, 'tests/fixtures/sessions/stepStandIn.mjs');
const close = (a: number, b: number) => Math.abs(a - b) < 1e-9 * Math.max(1, Math.abs(b));

function expectExposure(got: Exposure, want: FixtureExposure, movie: string): void {
  expect(got.movie).toBe(movie);
  expect(close(got.pixelSize, want.pixelSize), `pixel size ${got.pixelSize}`).toBe(true);
  expect(close(got.dose!, want.dose), `dose ${got.dose}`).toBe(true);
  expect(close(got.targetDefocus!, want.defocus), `defocus ${got.targetDefocus}`).toBe(true);
  expect(close(got.stage.x, want.stage.x) && close(got.stage.y, want.stage.y)).toBe(true);
  expect(close(got.stage.z!, want.stage.z)).toBe(true);
  expect(close(got.exposureTime!, want.exposureTime)).toBe(true);
  expect(got.frames).toBe(want.frames);
  expect(got.voltage).toBe(want.voltage);
}

const scan = (dir: string, o: Partial<Parameters<typeof scanSession>[1]> = {}) =>
  scanSession(dir, {
    format: 'auto',
    settleMs: 0,
    now: Date.now() + 1000,
    skip: new Set(),
    limit: 100,
    ...o,
  });

describe('session parsers', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'jobd-sessions-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('EPU: every exposure with its metadata, its movie, and nothing else', async () => {
    const want = fixtureExposures('sq', 3);
    const movies = await writeEpuSession(join(dir, 'epu'), want);
    const pass = await scan(join(dir, 'epu'));
    expect(pass.format).toBe('epu');
    expect(pass.ready).toHaveLength(3);
    const byMovie = new Map(pass.ready.map((e) => [e.movie, e]));
    want.forEach((w, i) => expectExposure(byMovie.get(movies[i]!)!, w, movies[i]!));
  });

  it('SerialEM: one exposure per frame mdoc, the movie from SubFramePath', async () => {
    const want = fixtureExposures('mov', 3);
    const movies = await writeSerialemSession(join(dir, 'sem'), want);
    const pass = await scan(join(dir, 'sem'));
    expect(pass.format).toBe('serialem');
    expect(pass.ready.map((e) => e.id)).toEqual(['mov1', 'mov2', 'mov3']);
    want.forEach((w, i) => expectExposure(pass.ready[i]!, w, movies[i]!));
  });

  it('Leginon: an exported image table, as JSON or CSV', async () => {
    const want = fixtureExposures('leg', 2);
    for (const as of ['json', 'csv'] as const) {
      const root = join(dir, `leginon-${as}`);
      const file = await writeLeginonSession(root, want, as);
      const pass = await scan(root, { format: 'leginon', leginonExport: file });
      expect(pass.ready.map((e) => e.id)).toEqual(['leg1', 'leg2']);
      want.forEach((w, i) =>
        expectExposure(pass.ready[i]!, w, join(root, 'rawdata', `${w.name}.frames.mrc`)),
      );
    }
  });

  it('a pass skips what was imported, holds back files still changing, and stops at its cap', async () => {
    const root = join(dir, 'sem');
    const later = await scan(root, { skip: new Set(['mov1']), limit: 1 });
    expect(later.ready.map((e) => e.id)).toEqual(['mov2']);
    expect(later.more).toBe(true);
    const fresh = await scan(root, { settleMs: 60_000, now: Date.now() });
    expect(fresh.ready).toEqual([]);
    expect(fresh.waiting).toHaveLength(3);
  });

  it('malformed files: an error naming the file and the problem', () => {
    const e = fixtureExposures('bad', 1)[0]!;
    const cases: [() => unknown, RegExp][] = [
      [
        () => parseEpuXml('/s/a.xml', epuXml(e).slice(0, 400), '/s/m.mrc'),
        /^\/s\/a\.xml: not well-formed XML \(line/,
      ],
      [
        () => parseEpuXml('/s/a.xml', '<Other/>', '/s/m.mrc'),
        /^\/s\/a\.xml: .*root element is not MicroscopeImage/,
      ],
      [
        () => parseEpuXml('/s/a.xml', epuXml(e).replace(/<X>[^<]*<\/X>/, '<X>far</X>'), '/s/m.mrc'),
        /^\/s\/a\.xml: has no stage X \(microscopeData\/stage\/Position\/X: "far"\)/,
      ],
      [
        () => parseMdoc('/s/m.mdoc', 'PixelSpacing = 1\ngarbage line\n'),
        /^\/s\/m\.mdoc: line 2: "garbage line" is neither/,
      ],
      [
        () =>
          mdocExposures(
            '/s/m.mdoc',
            parseMdoc('/s/m.mdoc', mdocText(e, 'm.mrc').replace(/StagePosition = .*/, 'StagePosition = 1')),
          ),
        /^\/s\/m\.mdoc: ZValue 0 \(line 9\): StagePosition = "1" is not 2 numbers/,
      ],
      [
        () =>
          mdocExposures(
            '/s/m.mdoc',
            parseMdoc('/s/m.mdoc', mdocText(e, 'm.mrc').replace(/PixelSpacing = .*/g, '')),
          ),
        /^\/s\/m\.mdoc: ZValue 0 \(line \d+\): no PixelSpacing/,
      ],
      [
        () => leginonExposures('/s/t.csv', 'filename,pixelsize,stage_x,stage_y\na,1e-10,x,0\n'),
        /^\/s\/t\.csv: row 1: stage_x = "x" is not a number/,
      ],
      [
        () => leginonExposures('/s/t.json', '{"rows": 1}'),
        /^\/s\/t\.json: must hold an array of row objects/,
      ],
    ];
    for (const [run, message] of cases) {
      let err: unknown;
      try {
        run();
      } catch (e2) {
        err = e2;
      }
      expect(err, String(message)).toBeInstanceOf(ImageFormatError);
      expect((err as Error).message).toMatch(message);
    }
  });
});

describe('session_import in a daemon', () => {
  let t: TestDb;
  let client: JobdClient;
  let settings: DaemonSettings;
  let daemon: DaemonProcess;
  let data: string;
  const gate = join(tmpdir(), `jobd-session-gate-${process.pid}`);
  const env = { SESSION_TEST_GATE: gate };

  beforeAll(async () => {
    t = await openTestDb('session_import');
    client = await JobdClient.connect({ mongoUri: t.uri, database: t.dbName });
    const base = writeDaemonSettings({ mongoUri: t.uri, database: t.dbName });
    data = join(base.dir, 'data');
    await mkdir(data, { recursive: true });
    settings = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      dir: base.dir,
      worker: { concurrency: 6, leaseMs: 3_000 },
      maintenance: { rescueIntervalMs: 300, releaseIntervalMs: 300 },
      jobTypes: {
        motion_correction: { handler: STAND_IN, mode: 'pooled' },
        ctf_estimation: { handler: STAND_IN, mode: 'pooled' },
        fft_power_spectrum: { handler: STAND_IN, mode: 'pooled' },
      },
      extra: { dataDirs: { data } },
    });
    daemon = await startDaemonProcess(settings, { env });
  }, 60_000);
  afterAll(async () => {
    rmSync(gate, { force: true });
    await killAllDaemons();
    await client.close();
    await t.close();
  });

  const finished = async (id: string, timeoutMs = 60_000): Promise<JobDoc> =>
    waitUntil(
      async () => {
        const j = await client.get(id);
        return j && ['completed', 'failed', 'cancelled'].includes(j.state) ? j : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `job ${id} finished` },
    );
  const childrenOf = (id: string) => client.store.jobs.find({ parentId: id }).toArray();

  /** The chain of each exposure: exactly three jobs, motion → ctf → fft, with the exposure's params. */
  async function expectChains(parent: JobDoc, want: Exposure[], out: string): Promise<void> {
    const kids = await childrenOf(parent._id);
    expect(kids).toHaveLength(3 * want.length);
    const byKey = new Map(kids.map((k) => [k.spawnKey!.split('/').slice(2).join('/'), k]));
    expect(byKey.size).toBe(kids.length);
    for (const e of want) {
      const expected = exposureJobs(e, out, { voltage: 300, cs: 2.7, amplitudeContrast: 0.07 });
      for (const j of expected) {
        const k = byKey.get(j.key);
        expect(k, `job ${j.key}`).toBeDefined();
        expect(k!.type).toBe(j.type);
        expect(k!.params).toEqual(j.params);
        expect(k!.state).toBe('completed');
        expect(k!.dependsOn ?? []).toEqual((j.dependsOn ?? []).map((d) => byKey.get(d)!._id));
      }
      const motion = byKey.get(`${e.id}:motion`)!.params as Record<string, unknown>;
      expect(motion.input).toBe(e.movie);
      expect(close(motion.dose_per_frame as number, e.dose! / e.frames)).toBe(true);
      expect(motion.voltage_kv).toBe(e.voltage);
    }
    const result = parent.result as {
      exposures: number;
      completed: number;
      summary: { defocus_u?: number }[];
    };
    expect(result.exposures).toBe(want.length);
    expect(result.completed).toBe(want.length);
    expect(result.summary.every((s) => s.defocus_u === 15000)).toBe(true);
    const doc = JSON.parse(await readFile(join(out, 'session.json'), 'utf8')) as { exposures: object };
    expect(Object.keys(doc.exposures).sort()).toEqual(want.map((e) => e.id).sort());
  }

  it('EPU and SerialEM sessions: each exposure gets its chain with its params, then the summary', async () => {
    const epuDir = join(data, 'epu');
    const semDir = join(data, 'sem');
    await writeEpuSession(epuDir, fixtureExposures('sq', 3));
    await writeSerialemSession(semDir, fixtureExposures('mov', 2));
    const params = (dir: string, out: string) => ({ session_dir: dir, output_dir: out, settle_ms: 0 });
    const [a, b] = await Promise.all([
      client.enqueue('session_import', params(epuDir, join(data, 'out-epu'))),
      client.enqueue('session_import', params(semDir, join(data, 'out-sem'))),
    ]);
    const [ja, jb] = await Promise.all([finished(a!.job._id), finished(b!.job._id)]);
    expect([ja.state, jb.state], JSON.stringify([ja.lastError, jb.lastError])).toEqual([
      'completed',
      'completed',
    ]);
    const epu = (await scan(epuDir)).ready;
    const sem = (await scan(semDir)).ready;
    await expectChains(ja, epu, join(data, 'out-epu'));
    await expectChains(jb, sem, join(data, 'out-sem'));
  }, 120_000);

  it('watch: an exposure written after the import started is picked up; SIGKILLs mid-import create nothing twice', async () => {
    const dir = join(data, 'watch');
    const out = join(data, 'out-watch');
    const [first, second, third] = fixtureExposures('w', 3);
    await writeSerialemSession(dir, [first!, second!]);
    writeFileSync(gate, ''); // the steps wait: the daemon is killed with some in flight
    const { job } = await client.enqueue('session_import', {
      session_dir: dir,
      output_dir: out,
      format: 'serialem',
      settle_ms: 200,
      watch: { interval_ms: 200, stop_after_idle_ms: 4_000 },
    });
    const kill = async () => {
      daemon.signal('SIGKILL');
      await daemon.exited;
      daemon = await startDaemonProcess(settings, { env });
    };
    await waitUntil(
      async () =>
        (await client.store.jobs.countDocuments({ parentId: job._id, state: 'running' })) > 0
          ? true
          : undefined,
      { timeoutMs: 60_000, intervalMs: 100, what: 'a step of the first exposures running' },
    );
    await kill();
    rmSync(gate);
    // Killed again while the resumed import polls: its rerun is told its children, and skips them.
    await waitUntil(
      async () => {
        const j = await client.get(job._id);
        return (j?.resumes ?? 0) >= 1 && j?.state === 'running' ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50, what: 'the import polling again after its first exposures' },
    );
    await kill();
    // Written while the import runs: picked up by a later pass.
    await writeSerialemExposure(dir, third!);
    const done = await finished(job._id, 90_000);
    expect(done.state, JSON.stringify(done.lastError)).toBe('completed');
    const all = (await scan(dir)).ready;
    expect(all.map((e) => e.id)).toEqual(['w1', 'w2', 'w3']);
    await expectChains(done, all, out);
    // Nothing twice, over the whole database: one job per (type, input) of this session.
    const inputs = await client.store.jobs
      .find({ parentId: job._id }, { projection: { type: 1, params: 1 } })
      .toArray();
    const seen = new Set(inputs.map((j) => `${j.type} ${(j.params as { input: string }).input}`));
    expect(seen.size).toBe(inputs.length);
  }, 180_000);
});
