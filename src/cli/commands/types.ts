import { Command } from 'commander';
import { jsonSchemas, loadCatalog } from '../../jobs/catalog.js';
import { commandContext, withCommonOptions, type CommonOptions, type RegisterCommand } from '../context.js';
import { formatMs, table } from '../output.js';

const HELP_AFTER = `
Lists the job types these settings define (built-ins and jobTypes), each with its queue, description,
settings and, where its module declares them (defineJobType, or "input"/"output" exports), its input
and output as JSON Schema (--json). Path fields carry "x-jobd-data-path". Needs no database.`;

export const registerTypes: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('types'))
      .description('the job types: queue, description, settings, and input/output JSON Schemas (--json)')
      .addHelpText('after', HELP_AFTER)
      .action(async (opts: CommonOptions) => {
        const ctx = commandContext(opts, env);
        const catalog = await loadCatalog(ctx.config.jobTypes);
        const rows = Object.values(catalog)
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((e) => {
            const d = e.definition;
            return {
              name: e.name,
              queue: e.queue,
              description: e.description ?? null,
              handler: d.handler,
              settings: {
                mode: d.mode,
                timeoutMs: d.timeoutMs,
                maxAttempts: d.maxAttempts,
                priority: d.priority,
                concurrency: d.concurrency ?? null,
                retry: d.retry,
              },
              defaults: e.defaults,
              legacyNames: e.legacyNames,
              ...jsonSchemas(e),
            };
          });
        ctx.printer.emit(rows, () =>
          table(
            ['type', 'queue', 'description', 'priority', 'attempts', 'timeout', 'schema'],
            rows.map((r) => [
              r.name,
              r.queue,
              r.description ?? '',
              r.settings.priority,
              r.settings.maxAttempts,
              formatMs(r.settings.timeoutMs),
              r.input ? 'yes' : 'no',
            ]),
          ),
        );
      }),
  );
};
