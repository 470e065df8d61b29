import { Command, Option } from 'commander';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ValidationError } from '../../errors.js';
import { followJobLog, readJobLog } from '../../ops/jobLogs.js';
import { JOB_LOOKUP_EXIT_CODES_HELP } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';

function copyFile(file: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const s = createReadStream(file);
    s.on('error', reject);
    s.on('end', resolve);
    s.pipe(process.stdout, { end: false });
  });
}

export const registerLogs: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('logs'))
      .description(
        "a job's output, from any host: the log its daemon stored in the database (else the log file under logDir on this host, else the tail kept on the job)",
      )
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
        // Jobs that ran before logs were stored in the database (or with worker.logStoreBytes 0)
        // have their whole log only in the file on the host that ran them.
        const file = join(ctx.config.logDir, `${id}.log`);
        await withConnection(ctx, async (conn) => {
          if (!opts.follow || ctx.printer.json) {
            const log = await readJobLog(conn.store, id);
            const useFile = log.source !== 'database' && existsSync(file);
            if (ctx.printer.json) {
              ctx.printer.emit(
                {
                  id,
                  state: log.state,
                  source: useFile ? 'file' : log.source,
                  truncated: log.truncated,
                  file: useFile ? file : null,
                  log: useFile ? readFileSync(file, 'utf8') : log.text,
                },
                () => '',
              );
              return;
            }
            if (useFile) await copyFile(file);
            else {
              if (log.source === 'tail')
                ctx.printer.note('(no stored log; showing the tail kept on the job)');
              process.stdout.write(log.text);
            }
            return;
          }
          let fromDb = false;
          for await (const piece of followJobLog(conn.store, id)) {
            if (piece.source === 'tail' && existsSync(file)) break;
            fromDb ||= piece.source === 'database';
            process.stdout.write(piece.text);
          }
          if (!fromDb && existsSync(file)) await copyFile(file);
        });
      }),
  );
};
