/**
 * jobctl migrate: move the legacy service's datasets onto jobd (docs/operations.md, "Migrating from
 * the legacy service"). Stop the legacy service first.
 */
import { Command, InvalidArgumentError } from 'commander';
import { collectionNameProblem, resolveDatasets } from '../../config/datasets.js';
import type { ResolvedConfig } from '../../config/types.js';
import {
  applyMigration,
  planMigration,
  rollbackMigration,
  validateMigration,
  type MigrateSource,
} from '../../migrate/migrate.js';
import { migrationStore } from '../../store/index.js';
import { intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { keyValues, table } from '../output.js';
import { RunProgress } from '../progressBar.js';

interface SourceOpts extends CommonOptions {
  legacyDatabase?: string;
  collection?: string;
  datasetUuid?: string;
  batchSize: number;
  inDataDir: string;
  outDataDir: string;
  dryRun?: boolean;
}

function withSourceOptions(cmd: Command): Command {
  return withCommonOptions(cmd)
    .option(
      '--legacy-database <name>',
      "database of the legacy collection (default: the settings' datasets.database, else jobd's database)",
    )
    .option(
      '--collection <name>',
      "the legacy datasets collection (default: the settings' datasets.collection, visstoredatas)",
      collectionOption,
    )
    .option('--dataset-uuid <uuid>', 'only this dataset')
    .option('--batch-size <n>', 'datasets per batch', intOption(1, 100_000), 1000)
    .option('--in-data-dir <dir>', 'the legacy in_data_dir (uploads)', '/mnt/visus_datasets/upload')
    .option('--out-data-dir <dir>', 'the legacy out_data_dir (converted)', '/mnt/visus_datasets/converted');
}

function collectionOption(value: string): string {
  const problem = collectionNameProblem(value);
  if (problem) throw new InvalidArgumentError(`${problem}.`);
  return value;
}

/** The flags, over the settings' datasets collection (the one the status updates use). */
function source(o: SourceOpts, config: ResolvedConfig): MigrateSource {
  const datasets = config.datasets ?? resolveDatasets(undefined);
  const legacyDatabase = o.legacyDatabase ?? datasets.database ?? undefined;
  return {
    ...(legacyDatabase !== undefined ? { legacyDatabase } : {}),
    collection: o.collection ?? datasets.collection,
    ...(o.datasetUuid !== undefined ? { uuid: o.datasetUuid } : {}),
    batchSize: o.batchSize,
    inDataDir: o.inDataDir.replace(/\/+$/, ''),
    outDataDir: o.outDataDir.replace(/\/+$/, ''),
  };
}

export const MIGRATE_HELP = `
Each dataset in a status a job type drives gets its jobs (a chain, as a workflow, where its status implies
more than one step). Datasets caught syncing, converting or uploading are re-run from the start of that
step. done and failed datasets, unknown statuses, missing or duplicate uuids and missing required fields
are skipped and reported, never changed. A ledger (collection ${migrationStore.LEDGER_COLLECTION}) keeps the
exact previous value of every dataset field the migration sets, for rollback. A second run creates nothing
new; a run killed halfway is finished by running it again.

Exit codes: 0 ok (validate: no problem found); 1 failure (validate: problems found); 2 bad settings, flags or arguments.`;

export const registerMigrate: RegisterCommand = (program, env, result) => {
  const migrate = withSourceOptions(new Command('migrate'))
    .description(
      "migrate the legacy service's datasets onto jobd jobs (--dry-run: print the plan, write nothing)",
    )
    .option('--dry-run', 'print the plan per legacy status and what is skipped and why; write nothing')
    .addHelpText('after', MIGRATE_HELP)
    .action(async (opts: SourceOpts) => {
      const ctx = commandContext(opts, env);
      const src = source(opts, ctx.config);
      await withConnection(
        ctx,
        async (conn) => {
          if (opts.dryRun) {
            const plan = await planMigration(conn.store, src);
            ctx.printer.emit({ dryRun: true, ...plan }, () =>
              [
                table(
                  ['legacy status', 'datasets', 'to migrate', 'jobs (type, priority, waits on)'],
                  Object.entries(plan.byStatus)
                    .sort(([a], [b]) => (a < b ? -1 : 1))
                    .map(([status, r]) => [
                      status,
                      r.datasets,
                      r.migrate,
                      r.jobs
                        ? r.jobs
                            .map(
                              (j) =>
                                `${j.type} p${j.priority}${j.dependsOn.length ? ` after ${j.dependsOn.join(',')}` : ''}`,
                            )
                            .join(' -> ')
                        : '',
                    ]),
                ),
                table(
                  ['skipped because', 'datasets', 'examples'],
                  Object.entries(plan.skipped).map(([why, g]) => [
                    why,
                    g.count,
                    g.samples
                      .map(
                        (x) =>
                          `${x.uuid ?? x.id}${x.status !== null ? ` (${x.status})` : ''}${x.detail ? `: ${x.detail}` : ''}`,
                      )
                      .join('; '),
                  ]),
                ),
                `${plan.total} datasets: ${plan.toMigrate} to migrate with ${plan.jobs} jobs; nothing was written (dry run)`,
              ].join('\n'),
            );
            return;
          }
          // The total only draws the bar: without one (not a terminal, or --json) it is not counted.
          const drawn = !!process.stderr.isTTY && !ctx.printer.json;
          const total = drawn
            ? await migrationStore.countLegacy(
                migrationStore.legacyCollection(conn.store, src.legacyDatabase, src.collection),
                src.uuid,
              )
            : 0;
          const bar = new RunProgress('migrate', total, drawn);
          const r = await applyMigration(conn.store, src, {
            now: () => ctx.clock.now(),
            onProgress: (n) => bar.update(n),
          });
          bar.finish(total);
          ctx.printer.emit(r, () =>
            keyValues([
              ['datasets migrated', r.datasets],
              ['jobs created', r.jobs],
              ['of which finished from an interrupted run', r.completedPending],
              ['datasets skipped (see --dry-run)', r.skipped],
            ]),
          );
        },
        // A dry run writes nothing, not even indexes.
        { ensureIndexes: !opts.dryRun },
      );
    });

  migrate.addCommand(
    withSourceOptions(new Command('validate'))
      .description(
        'check the migration: datasets without jobs, jobs without datasets, disagreeing statuses, ledger entries without jobs',
      )
      .addHelpText(
        'after',
        '\nExit codes: 0 no problem found; 1 problems found or a failure; 2 bad settings, flags or arguments.',
      )
      .action(async (_local: SourceOpts, cmd: Command) => {
        // Options given after "validate" that `migrate` also defines are parsed by `migrate`.
        const opts = cmd.optsWithGlobals<SourceOpts>();
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const rep = await validateMigration(conn.store, source(opts, ctx.config));
          ctx.printer.emit(rep, () =>
            rep.ok
              ? 'migration valid: every dataset that should have jobs has them, and every migrated job has its dataset'
              : keyValues([
                  [
                    'datasets without their jobs',
                    rep.missingJobs.map((m) => `${m.uuid} (${m.status})`).join(', '),
                  ],
                  [
                    'jobs whose dataset is missing',
                    rep.jobsWithoutDataset.map((m) => `${m.jobId} (${m.uuid ?? 'no uuid'})`).join(', '),
                  ],
                  [
                    'statuses that disagree with their jobs',
                    rep.statusDisagrees
                      .map(
                        (m) =>
                          `${m.uuid} (${m.status}: ${m.jobs.map((j) => `${j.type} ${j.state}`).join(', ')})`,
                      )
                      .join('; '),
                  ],
                  [
                    'ledger entries without jobs',
                    rep.ledgerWithoutJobs.map((m) => `${m.uuid} (${m.missing.length} missing)`).join(', '),
                  ],
                ]),
          );
          result.code = rep.ok ? 0 : 1;
        });
      }),
  );

  migrate.addCommand(
    withSourceOptions(new Command('rollback'))
      .description(
        'remove the jobs the migration created (cancelling unfinished ones first) and restore each dataset exactly from the ledger',
      )
      .option('--dry-run', 'count what would be removed and restored; change nothing')
      .action(async (_local: SourceOpts, cmd: Command) => {
        const opts = cmd.optsWithGlobals<SourceOpts>();
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const src = source(opts, ctx.config);
          const drawn = !!process.stderr.isTTY && !ctx.printer.json && !opts.dryRun;
          const total =
            !drawn || src.uuid !== undefined ? 1 : await migrationStore.ledger(conn.store).countDocuments();
          const bar = new RunProgress('rollback', total, drawn);
          const r = await rollbackMigration(conn.store, src, {
            now: () => ctx.clock.now(),
            dryRun: !!opts.dryRun,
            onProgress: (n) => bar.update(n),
          });
          bar.finish(r.datasets);
          ctx.printer.emit({ dryRun: !!opts.dryRun, ...r }, () =>
            keyValues([
              [opts.dryRun ? 'datasets that would be restored' : 'datasets restored', r.datasets],
              [opts.dryRun ? 'jobs that would be removed' : 'jobs removed', r.jobsDeleted],
              [opts.dryRun ? 'running jobs that would be cancelled' : 'running jobs cancelled', r.cancelled],
            ]),
          );
        });
      }),
  );
  program.addCommand(migrate);
};
