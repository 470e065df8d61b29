import { Command } from 'commander';
import { databaseChecks, localChecks, worstOf } from '../../monitor/doctor.js';
import { errorMessage } from '../common.js';
import { connectStore } from '../connect.js';
import { commandContext, withCommonOptions, type CommonOptions, type RegisterCommand } from '../context.js';
import { table } from '../output.js';

export const registerDoctor: RegisterCommand = (program, env, result) => {
  program.addCommand(
    withCommonOptions(new Command('doctor'))
      .description(
        'check settings, database (version, indexes, change streams), data dirs, external tools and clock skew',
      )
      .addHelpText(
        'after',
        '\nExit codes: 0 every check ok or warn; 1 a check failed; 2 bad settings or flags.',
      )
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        const checks = await localChecks(ctx.config, opts.settings ?? process.env.JOBD_SETTINGS);
        let conn;
        try {
          conn = await connectStore(ctx.config);
        } catch (err) {
          checks.push(...(await databaseChecks(null, ctx.config, errorMessage(err))));
        }
        if (conn) {
          try {
            checks.push(...(await databaseChecks(conn.store, ctx.config)));
          } finally {
            await conn.close();
          }
        }
        const status = worstOf(checks);
        ctx.printer.emit(
          { status, checks },
          () =>
            `${table(
              ['check', 'status', 'detail', 'hint'],
              checks.map((c) => [c.name, c.status, c.detail, c.hint ?? '']),
            )}\nresult: ${status}`,
        );
        if (status === 'fail') result.code = 1;
      }),
  );
};
