/** What every jobctl command gets: loaded settings, a printer and (on demand) a store connection. */
import { Option, type Command } from 'commander';
import { systemClock, type Clock } from '../clock.js';
import { loadConfig, type LoadOptions } from '../config/load.js';
import type { ResolvedConfig } from '../config/types.js';
import { connectStore, type Connection } from './connect.js';
import { createPrinter, type Printer } from './output.js';

export interface CommonOptions {
  settings?: string;
  mongoUri?: string;
  database?: string;
  json?: boolean;
}

/** Shared by the commands: where settings come from, which database, JSON output. */
export function withCommonOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--settings <file>', 'settings file (JSON); default $JOBD_SETTINGS'))
    .addOption(
      new Option('--mongo-uri <uri>', 'MongoDB URI or "embedded" (beats JOBD_MONGO_URI and the file)'),
    )
    .addOption(new Option('--database <name>', 'database name (beats JOBD_DATABASE and the file)'))
    .addOption(new Option('--json', 'print JSON instead of tables'));
}

export interface CliEnv {
  /** Built-in job types (the registry's), passed to loadConfig. */
  builtins?: LoadOptions['builtins'];
  clock?: Clock;
}

export interface CommandContext {
  config: ResolvedConfig;
  printer: Printer;
  clock: Clock;
}

export function commandContext(opts: CommonOptions, env: CliEnv): CommandContext {
  const config = loadConfig({
    ...(opts.settings !== undefined ? { settingsPath: opts.settings } : {}),
    flags: {
      ...(opts.mongoUri !== undefined ? { mongoUri: opts.mongoUri } : {}),
      ...(opts.database !== undefined ? { database: opts.database } : {}),
    },
    ...(env.builtins ? { builtins: env.builtins } : {}),
  });
  return { config, printer: createPrinter(!!opts.json), clock: env.clock ?? systemClock };
}

/**
 * Run `fn` with a connection that is closed afterwards, whatever happens. Only commands that write new
 * jobs ask for the indexes (the dedupe index must exist before an insert); reading commands then work
 * with a read-only database user too.
 */
export async function withConnection<T>(
  ctx: CommandContext,
  fn: (conn: Connection) => Promise<T>,
  opts: { ensureIndexes?: boolean } = {},
): Promise<T> {
  const conn = await connectStore(ctx.config, { ensureIndexes: opts.ensureIndexes ?? false });
  try {
    return await fn(conn);
  } finally {
    await conn.close();
  }
}

/** Each command file exports one of these; `result.code` is the process exit code it asks for. */
export type RegisterCommand = (program: Command, env: CliEnv, result: { code: number }) => void;
