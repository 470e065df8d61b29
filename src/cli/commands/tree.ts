/** jobctl tree ID: a job and its sub-jobs, with states and progress. */
import { Command } from 'commander';
import { NotFoundError } from '../../errors.js';
import { jobTree } from '../../store/workflowQueries.js';
import type { JobDoc } from '../../types.js';
import { JOB_LOOKUP_EXIT_CODES_HELP } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

function line(j: JobDoc): string {
  const progress = j.state === 'completed' ? '' : j.progress ? ` ${Math.round(j.progress.percent)}%` : '';
  const key = j.spawnKey ? ` [${j.spawnKey.split('/').slice(2).join('/')}]` : '';
  const why = j.state === 'waiting' && j.waitingFor ? ` (waiting for ${j.waitingFor})` : '';
  return `${j._id}${key} ${j.type} ${j.state}${why}${progress}`;
}

function draw(jobs: JobDoc[]): string {
  const kids = new Map<string, JobDoc[]>();
  for (const j of jobs.slice(1)) {
    const list = kids.get(j.parentId!) ?? [];
    list.push(j);
    kids.set(j.parentId!, list);
  }
  const out: string[] = [line(jobs[0]!)];
  const walk = (id: string, prefix: string): void => {
    const list = kids.get(id) ?? [];
    list.forEach((k, i) => {
      const last = i === list.length - 1;
      out.push(`${prefix}${last ? '└─ ' : '├─ '}${line(k)}`);
      walk(k._id, `${prefix}${last ? '   ' : '│  '}`);
    });
  };
  walk(jobs[0]!._id, '');
  return out.join('\n');
}

export const registerTree: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('tree'))
      .description('a job and all its sub-jobs, with states and progress')
      .argument('<id>', 'job id')
      .addHelpText('after', JOB_LOOKUP_EXIT_CODES_HELP)
      .action(async (id: string, opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const jobs = await jobTree(conn.store, id);
          if (jobs.length === 0) throw new NotFoundError(`job ${id} not found`);
          ctx.printer.emit(
            jobs.map((j) => ({
              id: j._id,
              parentId: j.parentId ?? null,
              key: j.spawnKey ? j.spawnKey.split('/').slice(2).join('/') : null,
              type: j.type,
              state: j.state,
              waitingFor: j.waitingFor ?? null,
              progress: j.progress ?? null,
            })),
            () => draw(jobs),
          );
        });
      }),
  );
};
