import { Command } from 'commander';
import { jobdVersion } from '../common.js';
import { createPrinter } from '../output.js';
import { withCommonOptions, type CommonOptions, type RegisterCommand } from '../context.js';

export const registerVersion: RegisterCommand = (program) => {
  program.addCommand(
    withCommonOptions(new Command('version'))
      .description("print jobctl's version (takes the global options like every command; needs no database)")
      .action((opts: CommonOptions) => {
        const data = { jobctl: jobdVersion(), node: process.version };
        createPrinter(!!opts.json).emit(data, () => `jobctl ${data.jobctl} (node ${data.node})`);
      }),
  );
};
