/**
 * jobctl migrate as a subprocess against a real database: dry run writes nothing (database dumps),
 * round trip restores the datasets exactly, one dataset, idempotence, SIGKILL mid-run then re-run,
 * unknown statuses untouched.
 */
import { EJSON } from 'bson';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestDb, type TestDb } from '../helpers/db.js';
import { Proc, run } from '../cli/proc.js';
import { runInProcess } from '../cli/inProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import { insertLegacyDatasets, LEGACY_STATUSES } from '../fixtures/legacy/generate.js';
import { DATA_TYPE_DEFAULTS, type DataTypeName } from '../../src/jobs/data/typeDefaults.js';

let t: TestDb;
beforeEach(async () => {
  t = await openTestDb('migrate');
});
afterEach(async () => {
  await t.close();
});

function jobctl(args: string[], timeoutMs = 120_000) {
  return run('jobctl', [...args, '--mongo-uri', t.uri, '--database', t.dbName], { timeoutMs });
}

/**
 * The same command in this process (../cli/inProcess.ts): for the runs whose process-level behaviour
 * (each exit code, output through a pipe) a real jobctl() in this file already checks.
 */
function jobctlHere(args: string[]) {
  return runInProcess([...args, '--mongo-uri', t.uri, '--database', t.dbName]);
}

/** Every collection of the test database, sorted by _id, in canonical extended JSON (field order kept). */
async function dump(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const names = (await t.db.listCollections().toArray()).map((c) => c.name).sort();
  for (const n of names) {
    const docs = await t.db.collection(n).find({}).sort({ _id: 1 }).toArray();
    out[n] = EJSON.stringify(docs, { relaxed: false });
  }
  return out;
}

async function datasetsDump(): Promise<string> {
  return EJSON.stringify(await t.db.collection('visstoredatas').find({}).sort({ _id: 1 }).toArray(), {
    relaxed: false,
  });
}

const migratedJobs = () => t.db.collection('jobs').countDocuments({ tags: 'legacy-migration' });

describe('jobctl migrate', () => {
  it('--dry-run writes nothing and reports every kind of skip', async () => {
    await insertLegacyDatasets(t.db.collection('visstoredatas'), 400, { batch: 400 });
    const before = await dump();
    const r = await jobctl(['migrate', '--dry-run', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(await dump()).toEqual(before);
    const plan = JSON.parse(r.stdout) as {
      total: number;
      toMigrate: number;
      skipped: Record<string, { count: number }>;
      byStatus: Record<string, unknown>;
    };
    expect(plan.total).toBe(400);
    for (const reason of [
      'terminal status',
      'unknown status',
      'missing uuid',
      'duplicate uuid',
      'missing required fields',
    ]) {
      expect(plan.skipped[reason]?.count ?? 0, reason).toBeGreaterThan(0);
    }
    for (const s of LEGACY_STATUSES) expect(plan.byStatus[s], s).toBeDefined();
    // The human form carries the same facts.
    const human = await jobctlHere(['migrate', '--dry-run']);
    expect(human.stdout).toContain('nothing was written');
    expect(await dump()).toEqual(before);
  });

  it('round trip: migrate, validate, a second migrate creates nothing, rollback restores the datasets exactly', async () => {
    const coll = t.db.collection('visstoredatas');
    await insertLegacyDatasets(coll, 300, { batch: 300 });
    // A dataset that already carries one of the fields the migration sets: its value must come back.
    const some = (await coll.findOne({ status: 'conversion queued', uuid: { $type: 'string' } }))!;
    await coll.updateOne({ _id: some._id }, { $set: { jobd_job_ids: 'legacy value' } });
    const original = await datasetsDump();
    const unknownBefore = EJSON.stringify(
      await coll
        .find({ status: { $in: ['processing', 'Done', 'queued', '', 'converted', 'SYNCING'] } })
        .sort({ _id: 1 })
        .toArray(),
      { relaxed: false },
    );

    // Real processes for migrate and rollback; the dry run, validate and the second migrate in-process.
    const plan = JSON.parse((await jobctlHere(['migrate', '--dry-run', '--json'])).stdout) as {
      toMigrate: number;
      jobs: number;
    };
    const m = await jobctl(['migrate', '--json', '--batch-size', '64']);
    expect(m.code, m.stderr).toBe(0);
    expect(JSON.parse(m.stdout)).toMatchObject({ datasets: plan.toMigrate, jobs: plan.jobs });
    expect(await migratedJobs()).toBe(plan.jobs);
    // Priorities: jobd's mapping of the legacy 1/2/3 (3/5/7), as a new job of the type gets.
    const priorities = await t.db
      .collection('jobs')
      .aggregate<{ _id: { type: DataTypeName; priority: number } }>([
        { $match: { tags: 'legacy-migration' } },
        { $group: { _id: { type: '$type', priority: '$priority' } } },
      ])
      .toArray();
    expect(priorities.length).toBeGreaterThanOrEqual(4);
    for (const { _id } of priorities)
      expect(_id.priority, _id.type).toBe(DATA_TYPE_DEFAULTS[_id.type].priority);
    expect(await t.db.collection('migration_ledger').countDocuments({ state: 'applied' })).toBe(
      plan.toMigrate,
    );
    // Unknown statuses: untouched.
    expect(
      EJSON.stringify(
        await coll
          .find({ status: { $in: ['processing', 'Done', 'queued', '', 'converted', 'SYNCING'] } })
          .sort({ _id: 1 })
          .toArray(),
        { relaxed: false },
      ),
    ).toBe(unknownBefore);
    // A chain waits on its first step.
    const chained = (await t.db
      .collection('jobs')
      .findOne({ type: 'dataset_conversion', dependsOn: { $exists: true } }))!;
    expect(chained.state).toBe('waiting');
    expect(
      await t.db
        .collection('jobs')
        .countDocuments({ _id: chained.dependsOn[0], type: { $in: ['google_sync', 'file_extraction'] } }),
    ).toBe(1);

    const v = await jobctlHere(['migrate', 'validate', '--json']);
    expect(v.code, v.stdout + v.stderr).toBe(0);

    const again = await jobctlHere(['migrate', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ datasets: 0, jobs: 0 });
    expect(await migratedJobs()).toBe(plan.jobs);

    const rb = await jobctl(['migrate', 'rollback', '--json']);
    expect(rb.code, rb.stderr).toBe(0);
    expect(JSON.parse(rb.stdout)).toMatchObject({ datasets: plan.toMigrate, jobsDeleted: plan.jobs });
    expect(await datasetsDump()).toBe(original);
    expect(await migratedJobs()).toBe(0);
    expect(await t.db.collection('migration_ledger').countDocuments()).toBe(0);
  });

  it("the legacy collection defaults to the settings' datasets.collection; --collection overrides; bad names exit 2", async () => {
    await insertLegacyDatasets(t.db.collection('legacy_sets'), 30, { batch: 30 });
    await insertLegacyDatasets(t.db.collection('visstoredatas'), 10, { batch: 10 });
    const dir = mkdtempSync(join(tmpdir(), 'jobd-migrate-'));
    const settings = (datasets: unknown) => {
      const f = join(dir, `s${Math.random().toString(36).slice(2)}.json`);
      writeFileSync(f, JSON.stringify({ datasets }));
      return f;
    };
    // In-process but the bad flag (a real exit 2).
    const total = async (args: string[]) => {
      const r = await jobctlHere(['migrate', '--dry-run', '--json', ...args]);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { total: number }).total;
    };
    const fromSettings = settings({ collection: 'legacy_sets' });
    const badSettings = settings({ collection: 'system.x' });
    // The runs are independent: at once.
    const [fromFile, overridden, byDefault, badFlag, badSetting] = await Promise.all([
      total(['--settings', fromSettings]),
      total(['--settings', fromSettings, '--collection', 'visstoredatas']),
      total([]),
      jobctl(['migrate', '--dry-run', '--collection', 'a$b']),
      jobctlHere(['migrate', '--dry-run', '--settings', badSettings]),
    ]);
    expect([fromFile, overridden, byDefault]).toEqual([30, 10, 10]);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toMatch(/--collection.*a\$b.*"\$"/);
    expect(badSetting.code).toBe(2);
    expect(badSetting.stderr).toContain('datasets.collection = "system.x"');
  });

  it('validate exits 1 when a migrated job is missing', async () => {
    await insertLegacyDatasets(t.db.collection('visstoredatas'), 60, { batch: 60 });
    expect((await jobctlHere(['migrate'])).code).toBe(0);
    const victim = (await t.db.collection('jobs').findOne({ tags: 'legacy-migration' }))!;
    await t.db.collection('jobs').deleteOne({ _id: victim._id });
    const v = await jobctl(['migrate', 'validate', '--json']);
    expect(v.code).toBe(1);
    const rep = JSON.parse(v.stdout) as { ledgerWithoutJobs: { uuid: string }[] };
    expect(rep.ledgerWithoutJobs.map((x) => x.uuid)).toContain(victim.datasetUuid);
  });

  it('one dataset: migrate and roll back only that one', async () => {
    const coll = t.db.collection('visstoredatas');
    await insertLegacyDatasets(coll, 300, { batch: 300 });
    const original = await datasetsDump();
    // In-process: the same commands as real processes are in the round trip above.
    const plan = JSON.parse((await jobctlHere(['migrate', '--dry-run', '--json'])).stdout) as {
      skipped: Record<string, { samples: { uuid: string }[] }>;
    };
    const skipped = new Set(Object.values(plan.skipped).flatMap((g) => g.samples.map((x) => x.uuid)));
    const candidates = await coll
      .find({
        status: { $in: ['sync queued', 'syncing', 'sync error'] },
        user: { $type: 'string' },
        sensor: { $type: 'string' },
        google_drive_link: { $regex: '^https' },
      })
      .toArray();
    const target = candidates.find(
      (c) => !skipped.has(c.uuid as string) && candidates.filter((d) => d.uuid === c.uuid).length === 1,
    )!;
    const m = await jobctlHere(['migrate', '--dataset-uuid', target.uuid as string, '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(JSON.parse(m.stdout)).toMatchObject({ datasets: 1, jobs: 2 });
    const jobs = await t.db.collection('jobs').find({ tags: 'legacy-migration' }).toArray();
    expect(jobs.map((j) => j.datasetUuid as string)).toEqual([target.uuid, target.uuid]);
    expect(jobs.map((j) => j.type as string).sort()).toEqual(['dataset_conversion', 'google_sync']);
    const after = (await coll.findOne({ _id: target._id }))!;
    expect(after.jobd_job_ids).toEqual(expect.arrayContaining(jobs.map((j) => j._id)));
    const rb = await jobctlHere(['migrate', 'rollback', '--dataset-uuid', target.uuid as string, '--json']);
    expect(JSON.parse(rb.stdout)).toMatchObject({ datasets: 1, jobsDeleted: 2 });
    expect(await datasetsDump()).toBe(original);
  });

  it('uuids that differ only by surrounding spaces are duplicates: neither dataset is migrated', async () => {
    const coll = t.db.collection('visstoredatas');
    await insertLegacyDatasets(coll, 200, { batch: 200 });
    const all = await coll
      .find({
        status: 'sync queued',
        uuid: { $type: 'string' },
        user: { $type: 'string' },
        sensor: { $type: 'string' },
        google_drive_link: { $regex: '^https' },
      })
      .toArray();
    const target = all.find((c) => all.filter((d) => d.uuid === c.uuid).length === 1)!;
    const { _id: _drop, ...copy } = target;
    await coll.insertOne({ ...copy, uuid: `  ${target.uuid as string} ` });
    const uuid = target.uuid as string;
    const one = await jobctlHere(['migrate', '--dataset-uuid', uuid, '--json']);
    expect(one.code, one.stderr).toBe(0);
    expect(JSON.parse(one.stdout)).toMatchObject({ datasets: 0, jobs: 0 });
    const m = await jobctlHere(['migrate', '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(await t.db.collection('jobs').countDocuments({ datasetUuid: uuid })).toBe(0);
    expect(await t.db.collection('migration_ledger').countDocuments({ _id: uuid as never })).toBe(0);
    // The other datasets did migrate.
    expect(await migratedJobs()).toBeGreaterThan(0);
  });

  it('rollback cancels an unfinished job before removing it, and --dry-run changes nothing', async () => {
    const coll = t.db.collection('visstoredatas');
    await insertLegacyDatasets(coll, 40, { batch: 40 });
    const original = await datasetsDump();
    await jobctlHere(['migrate']);
    const job = (await t.db.collection('jobs').findOne({ tags: 'legacy-migration', state: 'queued' }))!;
    await t.db.collection('jobs').updateOne(
      { _id: job._id },
      {
        $set: {
          state: 'running',
          attempts: 1,
          startedAt: new Date(),
          lease: { owner: 'w1', token: 't', expiresAt: new Date(Date.now() + 60_000) },
        },
      },
    );
    const before = await dump();
    const dry = await jobctlHere(['migrate', 'rollback', '--dry-run', '--json']);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true, cancelled: 1 });
    expect(await dump()).toEqual(before);
    const rb = await jobctlHere(['migrate', 'rollback', '--json']);
    expect(JSON.parse(rb.stdout)).toMatchObject({ cancelled: 1 });
    expect(await datasetsDump()).toBe(original);
    expect(await t.db.collection('jobs').countDocuments({ _id: job._id })).toBe(0);
  });

  it('SIGKILL mid-migrate, then a re-run: no duplicates, and validate passes', async () => {
    await insertLegacyDatasets(t.db.collection('visstoredatas'), 3000, { batch: 1000 });
    const plan = JSON.parse((await jobctlHere(['migrate', '--dry-run', '--json'])).stdout) as {
      toMigrate: number;
      jobs: number;
    };
    const p = new Proc('jobctl', [
      'migrate',
      '--batch-size',
      '20',
      '--mongo-uri',
      t.uri,
      '--database',
      t.dbName,
    ]);
    const ledger = t.db.collection('migration_ledger');
    await waitUntil(async () => (await ledger.countDocuments()) >= 100, {
      what: 'the migration to be under way',
      timeoutMs: 60_000,
      intervalMs: 20,
    });
    p.child.kill('SIGKILL');
    const exit = await p.exited;
    expect(exit.signal).toBe('SIGKILL');
    const partial = await ledger.countDocuments();
    expect(partial).toBeLessThan(plan.toMigrate);

    // The re-run in-process; the killed run and validate's exit code as real processes.
    const m = await jobctlHere(['migrate', '--json']);
    expect(m.code, m.stderr).toBe(0);
    expect(await migratedJobs()).toBe(plan.jobs);
    expect(await ledger.countDocuments({ state: 'applied' })).toBe(plan.toMigrate);
    const perDataset = await t.db
      .collection('jobs')
      .aggregate([
        { $match: { tags: 'legacy-migration' } },
        { $group: { _id: { u: '$datasetUuid', t: '$type' }, n: { $sum: 1 } } },
        { $match: { n: { $gt: 1 } } },
      ])
      .toArray();
    expect(perDataset).toEqual([]);
    const v = await jobctl(['migrate', 'validate']);
    expect(v.code, v.stdout).toBe(0);
  });
});
