/**
 * The `programs` settings: a site's own programs (MotionCor2, CTFFIND, Gctf, a lab script) that the
 * `external_program` job type runs. Each is an argument template, never a shell line:
 *
 *   "programs": { "motioncor2": {
 *     "path": "/opt/motioncor2/bin/MotionCor2",
 *     "args": ["-InMrc", "{input}", "-OutMrc", "{output}/sum.mrc", "-Patch", "{patch}"],
 *     "outputs": ["{output}/sum.mrc"],
 *     "progress": "Frame (\\d+) of (\\d+)" } }
 *
 * A job's values fill the `{slot}`s; each template argument stays one argument whatever the value holds.
 */
import { z } from 'zod';
import { regexSetting } from './regexSetting.js';

/** One program as the child receives it (path resolved against the settings file). */
export interface ProgramSettings {
  /** An absolute path, or a bare name looked up on PATH when the job runs. */
  path: string;
  args: string[];
  /** Files (templates like args) that must exist after a successful exit. */
  outputs: string[];
  /** A regex over each output line: one group is a percent, two are done and total. */
  progress?: string;
  /** The environment variable that receives the job's GPU ids (default CUDA_VISIBLE_DEVICES). */
  gpuEnv: string;
  /** Exit codes that mean bad input: the job fails without further attempts (126 and 127 always do). */
  permanentExitCodes: number[];
}

export const PROGRAM_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
/** `{name}` in a template; `{{` and `}}` stand for literal braces. */
export const SLOT = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const SLOT_RULE = 'slots are {name} with letters, digits and _ (write {{ and }} for literal braces)';

/** Slot names of a template argument; undefined when it holds a brace that is not a slot. */
export function slotsOf(template: string): string[] | undefined {
  const names: string[] = [];
  const rest = template.replace(SLOT, (m, name: string | undefined) => {
    if (name) names.push(name);
    return '';
  });
  return /[{}]/.test(rest) ? undefined : names;
}

const template = z.string({ error: 'must be a string' }).superRefine((v, ctx) => {
  if (!slotsOf(v)) ctx.addIssue({ code: 'custom', message: `has a stray brace: ${SLOT_RULE}` });
});

export const programsSchema = z.record(
  z.string().regex(PROGRAM_NAME, {
    error: 'program names start with a letter and use letters, digits, _ - (at most 64)',
  }),
  z.strictObject(
    {
      path: z
        .string({ error: 'must be the program: an absolute path, or a name found on PATH' })
        .min(1, { error: 'must be the program: an absolute path, or a name found on PATH (not empty)' }),
      args: z.array(template, { error: 'must be a list of arguments, e.g. ["--in", "{input}"]' }).optional(),
      outputs: z
        .array(template.pipe(z.string().min(1, { error: 'must be a file path template (not empty)' })), {
          error: 'must be a list of file path templates, e.g. ["{output}/sum.mrc"]',
        })
        .optional(),
      progress: regexSetting((groups) =>
        groups < 1 || groups > 2
          ? `must be a regular expression with 1 group (a percent, e.g. "(\\d+)%") or 2 groups (done and total, e.g. "frame (\\d+)/(\\d+)"); it has ${groups}`
          : undefined,
      ).optional(),
      gpuEnv: z
        .string({ error: 'must be an environment variable name' })
        .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, {
          error: 'must be an environment variable name (letters, digits, _), e.g. CUDA_VISIBLE_DEVICES',
        })
        .optional(),
      permanentExitCodes: z
        .array(
          z
            .number({ error: 'must be an exit code from 1 to 255' })
            .int({ error: 'must be an exit code from 1 to 255' })
            .min(1, { error: 'must be an exit code from 1 to 255' })
            .max(255, { error: 'must be an exit code from 1 to 255' }),
          { error: 'must be a list of exit codes' },
        )
        .optional(),
    },
    {
      error: 'must be an object: { "path": "...", "args": [...], "outputs": [...], "progress": "regex" }',
    },
  ),
  { error: 'must be an object of programs by name ({ "ctffind": { "path": "...", "args": [...] } })' },
);

export type ProgramsInput = z.infer<typeof programsSchema>;

/** The programs as the child gets them; `pathFor` resolves a path given with a slash. */
export function resolvePrograms(
  given: ProgramsInput | undefined,
  pathFor: (key: string, value: string) => string,
): Record<string, ProgramSettings> {
  const out: Record<string, ProgramSettings> = {};
  for (const [name, p] of Object.entries(given ?? {})) {
    out[name] = {
      path: p.path.includes('/') ? pathFor(`programs.${name}.path`, p.path) : p.path,
      args: [...(p.args ?? [])],
      outputs: [...(p.outputs ?? [])],
      ...(p.progress !== undefined ? { progress: p.progress } : {}),
      gpuEnv: p.gpuEnv ?? 'CUDA_VISIBLE_DEVICES',
      permanentExitCodes: [...(p.permanentExitCodes ?? [])],
    };
  }
  return out;
}
