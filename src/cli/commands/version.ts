import { Command, Option } from 'commander';
import { jobdVersion } from '../common.js';
import { createPrinter } from '../output.js';
import type { RegisterCommand } from '../context.js';

export const registerVersion: RegisterCommand = (program) => {
  program.addCommand(
    new Command('version')
      .description("print jobctl's version")
      .addOption(new Option('--json', 'print JSON'))
      .action((opts: { json?: boolean }) => {
        const data = { jobctl: jobdVersion(), node: process.version };
        createPrinter(!!opts.json).emit(data, () => `jobctl ${data.jobctl} (node ${data.node})`);
      }),
  );
};
