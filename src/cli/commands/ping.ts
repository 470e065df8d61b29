import { Command } from 'commander';
import { ping } from '../../store/connect.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { keyValues } from '../output.js';

export const registerPing: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('ping'))
      .description('check that the configured database answers; prints the backend and round-trip time')
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, async (conn) => {
          const ms = await ping(conn.store);
          const data = {
            ok: true,
            backend: conn.backend,
            uri: conn.uri,
            database: ctx.config.database,
            roundTripMs: Number(ms.toFixed(2)),
          };
          ctx.printer.emit(data, () =>
            keyValues([
              ['backend', data.backend],
              ['uri', data.uri],
              ['database', data.database],
              ['round trip', `${data.roundTripMs} ms`],
            ]),
          );
        });
      }),
  );
};
