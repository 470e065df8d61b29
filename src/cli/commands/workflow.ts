/** jobctl workflow submit|show|cancel|list: whole DAGs of jobs (see docs/state-machine.md). */
import { Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { NotFoundError, ValidationError } from '../../errors.js';
import { cancelWorkflow } from '../../store/workflowOps.js';
import { getWorkflow, listWorkflows, workflowJobs } from '../../store/workflowQueries.js';
import { WORKFLOW_STATES, type JobDoc, type WorkflowDoc, type WorkflowState } from '../../types.js';
import { layers } from '../../workflows/dag.js';
import { submitWorkflow, type WorkflowSpec } from '../../workflows/submit.js';
import { errorMessage, intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommandContext,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { formatDate, table } from '../output.js';

function readSpec(file: string): WorkflowSpec {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err);
    throw new ValidationError(`workflow file ${file}: cannot read it: ${why}`);
  }
  try {
    return JSON.parse(text) as WorkflowSpec;
  } catch (err) {
    throw new ValidationError(`workflow file ${file} is not valid JSON: ${errorMessage(err)}`);
  }
}

function defaultsFor(ctx: CommandContext, type: string) {
  return ctx.config.jobTypes[type] ?? { priority: ctx.config.defaults.priority };
}

function progressOf(j: JobDoc): string {
  if (j.state === 'completed') return '100%';
  return j.progress ? `${Math.round(j.progress.percent)}%` : '';
}

/** The DAG by layers of depth: each job with its state, progress and what it waits for. */
function drawDag(wf: WorkflowDoc, jobs: JobDoc[]): string {
  const byKey = new Map(jobs.map((j) => [j.workflowKey ?? j._id, j]));
  const keyOf = new Map(jobs.map((j) => [j._id, j.workflowKey ?? j._id]));
  const nodes = jobs.map((j) => ({
    key: j.workflowKey ?? j._id,
    dependsOn: (j.dependsOn ?? []).map((d) => keyOf.get(d) ?? d),
  }));
  const rows: unknown[][] = [];
  layers(nodes).forEach((keys, depth) => {
    for (const k of keys) {
      const j = byKey.get(k)!;
      const deps = nodes.find((n) => n.key === k)!.dependsOn;
      rows.push([depth, k, j._id, j.type, j.state, progressOf(j), deps.join(', ')]);
    }
  });
  const counts = new Map<string, number>();
  for (const j of jobs) counts.set(j.state, (counts.get(j.state) ?? 0) + 1);
  const summary = [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
  return [
    `workflow ${wf._id} "${wf.name}": ${wf.state}${wf.reason ? ` (${wf.reason})` : ''}; ${wf.jobCount} jobs: ${summary}`,
    table(['layer', 'key', 'id', 'type', 'state', 'progress', 'after'], rows),
  ].join('\n');
}

const SUBMIT_HELP = `
FILE is JSON (- for stdin):
  {"name": "nightly", "id": "optional-id", "jobs": [
     {"key": "sync", "type": "rsync", "params": {...}},
     {"key": "convert", "type": "convert", "dependsOn": ["sync"], "onDependencyFailure": "fail"}]}
Keys must be unique, dependencies must name keys of the file, and the graph must have no cycle; the
whole file is checked before anything is written. With "id", submitting the same file again returns
the workflow already submitted.

Exit codes: 0 submitted; 1 failure; 2 bad flags or file (unknown key, cycle, bad field): nothing written.`;

export const registerWorkflow: RegisterCommand = (program, env) => {
  const wf = new Command('workflow').description('submit, show, cancel and list workflows (DAGs of jobs)');
  wf.addCommand(
    withCommonOptions(new Command('submit'))
      .description('submit a workflow from a JSON file; prints its id')
      .argument('<file>', 'workflow JSON file, or - for stdin')
      .addHelpText('after', SUBMIT_HELP)
      .action(async (file: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        const spec = readSpec(file);
        await withConnection(
          ctx,
          async (conn) => {
            const { workflow, created } = await submitWorkflow(
              conn.store,
              spec,
              (t) => defaultsFor(ctx, t),
              ctx.clock.now(),
            );
            ctx.printer.emit({ id: workflow._id, created, state: workflow.state, jobs: workflow.keys }, () =>
              created ? workflow._id : `${workflow._id} (already submitted; ${workflow.state})`,
            );
          },
          { ensureIndexes: true },
        );
      }),
  );
  wf.addCommand(
    withCommonOptions(new Command('show'))
      .description("draw a workflow's DAG with each job's state and progress")
      .argument('<id>', 'workflow id')
      .addHelpText(
        'after',
        '\nExit codes: 0 ok; 1 failure; 2 bad settings or flags; 3 no workflow with that id.',
      )
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const w = await getWorkflow(conn.store, id);
          if (!w) throw new NotFoundError(`workflow ${id} not found`);
          const jobs = await workflowJobs(conn.store, id);
          ctx.printer.emit(
            {
              ...w,
              jobs: jobs.map((j) => ({
                key: j.workflowKey,
                id: j._id,
                type: j.type,
                state: j.state,
                progress: j.progress ?? null,
                dependsOn: j.dependsOn ?? [],
                lastError: j.lastError ?? null,
              })),
            },
            () => drawDag(w, jobs),
          );
        });
      }),
  );
  wf.addCommand(
    withCommonOptions(new Command('cancel'))
      .description('cancel every unfinished job of a workflow (running ones are stopped by their workers)')
      .argument('<id>', 'workflow id')
      .addHelpText(
        'after',
        '\nExit codes: 0 cancelled; 1 failure; 2 bad settings or flags; 3 no workflow with that id.',
      )
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const { workflow, cancelled } = await cancelWorkflow(conn.store, id, {
            now: ctx.clock.now(),
            by: 'jobctl',
            reason: 'workflow cancelled by operator',
          });
          ctx.printer.emit(
            { id: workflow._id, state: workflow.state, cancelled },
            () => `workflow ${workflow._id} ${workflow.state}; ${cancelled.length} job(s) cancelled`,
          );
        });
      }),
  );
  wf.addCommand(
    withCommonOptions(new Command('list'))
      .description('workflows, newest first')
      .addOption(new Option('--state <state>', 'only workflows in this state').choices([...WORKFLOW_STATES]))
      .addOption(new Option('--limit <n>', 'at most this many').argParser(intOption(1, 10_000)).default(50))
      .action(async (opts: CommonOptions & { state?: WorkflowState; limit: number }) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const list = await listWorkflows(conn.store, {
            ...(opts.state ? { state: opts.state } : {}),
            limit: opts.limit,
          });
          ctx.printer.emit(list, () =>
            table(
              ['id', 'name', 'state', 'jobs', 'created', 'finished'],
              list.map((w) => [
                w._id,
                w.name,
                w.state,
                w.jobCount,
                formatDate(w.createdAt),
                formatDate(w.finishedAt),
              ]),
            ),
          );
        });
      }),
  );
  program.addCommand(wf);
};
