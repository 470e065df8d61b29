/**
 * Filling a site program's argument template (settings `programs`) with a job's values. Each template
 * argument becomes exactly one argument, whatever the values hold (spaces, semicolons, quotes): the
 * program is started from the array, never through a shell.
 */
import type { ProgramSettings } from '../../config/programs.js';
import { SLOT } from '../../config/programs.js';
import { DataInputError } from '../lib/errors.js';
import type { ToolDef } from '../lib/toolTable.js';

/** The programs the daemon handed the job (settings `programs`, as JSON in JOBD_PROGRAMS). */
export function handedPrograms(text = process.env.JOBD_PROGRAMS): Record<string, ProgramSettings> {
  if (!text) return {};
  try {
    return JSON.parse(text) as Record<string, ProgramSettings>;
  } catch (err) {
    // Written by the daemon from validated settings: unreadable text is a bug, not a user's mistake.
    throw new Error(`JOBD_PROGRAMS is not JSON: ${(err as Error).message}`, { cause: err });
  }
}

/** Replaces every `{slot}` of one template argument; a slot without a value is refused, naming it. */
export function fill(template: string, values: Readonly<Record<string, string>>, where: string): string {
  return template.replace(SLOT, (m, name: string | undefined) => {
    if (!name) return m === '{{' ? '{' : '}';
    const v = values[name];
    if (v === undefined) {
      const given = Object.keys(values);
      throw new DataInputError(
        `${where}: the slot {${name}} has no value: give it in params.inputs, params.outputs or params.values (given: ${
          given.length ? given.join(', ') : 'none'
        })`,
      );
    }
    return v;
  });
}

export function fillArgs(
  name: string,
  program: ProgramSettings,
  values: Readonly<Record<string, string>>,
): { args: string[]; outputs: string[] } {
  return {
    args: program.args.map((a, i) => fill(a, values, `programs.${name}.args[${i}] "${a}"`)),
    outputs: program.outputs.map((o, i) => fill(o, values, `programs.${name}.outputs[${i}] "${o}"`)),
  };
}

/** A progress line parser: one group is a percent, two are done and total. */
export function progressParser(
  regex: string | undefined,
): ((line: string) => { percent: number; message: string } | undefined) | undefined {
  if (regex === undefined) return undefined;
  const re = new RegExp(regex);
  return (line) => {
    const m = re.exec(line);
    if (!m || m[1] === undefined) return undefined;
    const a = Number(m[1]);
    const percent = m[2] !== undefined ? (100 * a) / Number(m[2]) : a;
    return Number.isFinite(percent) ? { percent, message: line.slice(0, 200) } : undefined;
  };
}

/** A site program's exit codes: 126/127 (cannot run) and the configured ones are permanent. */
export function programTool(name: string, program: ProgramSettings): ToolDef {
  const permanent = (meaning: string) => ({ retryable: false, meaning });
  return {
    name,
    program: program.path,
    debianPackage: `(the program configured as programs.${name}.path)`,
    otherRetryable: true,
    exitCodes: {
      ...Object.fromEntries(
        program.permanentExitCodes.map((c) => [c, permanent('listed in permanentExitCodes')]),
      ),
      126: permanent('the program cannot be executed'),
      127: permanent('the program was not found'),
    },
  };
}
