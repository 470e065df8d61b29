/** jobctl dataset show|process: a legacy dataset's status and jobs, and its pipelines (docs/datasets.md). */
import { Command, Option } from 'commander';
import { processDataset, showDataset, type DatasetReport } from '../../datasets/admin.js';
import { pipelinesOf } from '../../datasets/pipelines.js';
import { resolveDatasets } from '../../config/datasets.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatDate, table } from '../output.js';

function render(r: DatasetReport): string {
  const lines = [
    `dataset ${r.uuid} (${r.collection}): ${String(r.status ?? '(no status)')}` +
      (r.setBy ? `, set by job ${r.setBy.jobId} at ${formatDate(r.setBy.at)}` : ''),
    '',
    'status history:',
    r.history.length
      ? table(
          ['at', 'from', 'to', 'job', 'type', 'job state'],
          r.history.map((h) => [formatDate(h.at), h.from ?? '', h.to, h.jobId, h.type, h.jobState]),
        )
      : '  (none recorded by jobd)',
    '',
    'jobs:',
    r.jobs.length
      ? table(
          ['id', 'type', 'state', 'attempts', 'created', 'started', 'finished', 'last error'],
          r.jobs.map((j) => [
            j.id,
            j.type,
            j.state,
            `${j.attempts}/${j.maxAttempts ?? '-'}`,
            formatDate(j.createdAt),
            formatDate(j.startedAt),
            formatDate(j.finishedAt),
            (j.lastError ?? '').slice(0, 60),
          ]),
        )
      : '  (none)',
  ];
  return lines.join('\n');
}

export const registerDataset: RegisterCommand = (program, env) => {
  const ds = new Command('dataset').description(
    "a legacy dataset's status, history and jobs; run its pipelines",
  );
  ds.addCommand(
    withCommonOptions(new Command('show'))
      .description("a dataset's status, its history and its jobs (state, type, attempts, times)")
      .argument('<uuid>', "the dataset's uuid")
      .addHelpText(
        'after',
        '\nExit codes: 0 ok; 1 failure; 2 bad settings or flags; 3 no dataset with that uuid.',
      )
      .action(async (uuid: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const r = await showDataset(conn.store, ctx.config, uuid);
          ctx.printer.emit(r, () => render(r));
        });
      }),
  );
  ds.addCommand(
    withCommonOptions(new Command('process'))
      .description("start a pipeline for a dataset (a workflow built from the dataset's document)")
      .argument('<uuid>', "the dataset's uuid")
      .addOption(new Option('--pipeline <name>', 'the pipeline to run').makeOptionMandatory())
      .addHelpText(
        'after',
        () =>
          `\nPipelines: ${Object.entries(pipelinesOf(resolveDatasets(undefined)))
            .map(([n, p]) => `${n} (${p.stages.map((s) => s.type).join(' → ')})`)
            .join(', ')}, and those of datasets.pipelines in the settings.\n` +
          '\nExit codes: 0 started; 1 failure, or the dataset is already being processed (unfinished jobs);\n' +
          '2 bad settings, flags, pipeline or params (nothing written); 3 no dataset with that uuid.',
      )
      .action(async (uuid: string, opts: CommonOptions & { pipeline: string }) => {
        const ctx = commandContext(opts, env);
        await withConnection(
          ctx,
          async (conn) => {
            const r = await processDataset(conn.store, ctx.config, uuid, opts.pipeline, ctx.clock.now());
            ctx.printer.emit(
              {
                uuid,
                pipeline: r.pipeline,
                workflowId: r.workflow._id,
                state: r.workflow.state,
                jobs: r.workflow.keys,
              },
              () =>
                `dataset ${uuid}: pipeline ${r.pipeline} started as workflow ${r.workflow._id} (${Object.entries(
                  r.workflow.keys,
                )
                  .map(([k, id]) => `${k} ${id}`)
                  .join(', ')})`,
            );
          },
          { ensureIndexes: true },
        );
      }),
  );
  program.addCommand(ds);
};
