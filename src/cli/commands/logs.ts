import { Command, Option } from 'commander';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { NotFoundError, ValidationError } from '../../errors.js';
import { get } from '../../store/queries.js';
import { FINISHED_STATES } from '../../types.js';
import { JOB_LOOKUP_EXIT_CODES_HELP } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

/** Copy bytes [from, end) of a file to stdout; returns the new offset. */
async function copyFrom(file: string, from: number): Promise<number> {
  const size = statSync(file).size;
  if (size < from) from = 0; // truncated or replaced
  if (size === from) return from;
  await new Promise<void>((resolve, reject) => {
    const s = createReadStream(file, { start: from, end: size - 1 });
    s.on('error', reject);
    s.on('end', resolve);
    s.pipe(process.stdout, { end: false });
  });
  return size;
}

const FOLLOW_POLL_MS = 500;

export const registerLogs: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('logs'))
      .description("a job's output: its log file under logDir, or the tail kept on the job")
      .argument('<id>', 'job id')
      .addHelpText('after', JOB_LOOKUP_EXIT_CODES_HELP)
      .addOption(new Option('-f, --follow', 'keep printing new output until the job finishes'))
      .action(async (id: string, opts: CommonOptions & { follow?: boolean }) => {
        if (!/^[A-Za-z0-9_-]{1,128}$/.test(id)) {
          throw new ValidationError(
            `<id> = ${JSON.stringify(id)} is not a job id (letters, digits, _ and - only)`,
          );
        }
        const ctx = commandContext(opts, env);
        const file = join(ctx.config.logDir, `${id}.log`);
        await withConnection(ctx, async (conn) => {
          const job = await get(conn.store, id);
          const hasFile = existsSync(file);
          if (!job && !hasFile)
            throw new NotFoundError(`job ${id} not found in database ${ctx.config.database}`);
          if (ctx.printer.json) {
            ctx.printer.emit(
              {
                id,
                file: hasFile ? file : null,
                state: job?.state ?? null,
                log: hasFile ? readFileSync(file, 'utf8') : (job?.logTail ?? ''),
              },
              () => '',
            );
            return;
          }
          if (!opts.follow) {
            if (hasFile) await copyFrom(file, 0);
            else {
              ctx.printer.note(`(no log file at ${file}; showing the tail kept on the job)`);
              process.stdout.write(job?.logTail ?? '');
            }
            return;
          }
          // A log file has no change notification that works everywhere (NFS, containers): poll its size.
          // The file may not exist yet (job queued, or nothing printed so far).
          let offset = 0;
          let printed = false;
          for (;;) {
            const current = await get(conn.store, id);
            if (existsSync(file)) {
              offset = await copyFrom(file, offset);
              printed ||= offset > 0;
            }
            if (!current || FINISHED_STATES.includes(current.state)) {
              if (!printed && current?.logTail) process.stdout.write(current.logTail);
              return;
            }
            await delay(FOLLOW_POLL_MS);
          }
        });
      }),
  );
};
