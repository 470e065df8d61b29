import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { DataInputError, DataJobError } from '../lib/errors.js';
import { IMAGING_TYPE_DEFAULTS } from './typeDefaults.js';

const SLOT_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Built-in job type `external_program`: a site program from the settings, its slots filled by the job. */
export default defineJobType({
  name: 'external_program',
  description:
    "Runs a site program named in the settings (programs.<name>: path, args template, outputs, progress regex). The job's inputs, outputs and values fill the template's {slots}, one argument each, never through a shell; the GPUs go in CUDA_VISIBLE_DEVICES (or the program's gpuEnv); declared outputs are checked after it exits; a cancel stops its whole process group.",
  schemas: (z) => {
    const slotKey = z.string().regex(SLOT_NAME, { error: 'slot names use letters, digits and _' });
    return {
      input: z
        .strictObject({
          program: z.string().min(1).describe('the program: a name under the settings programs'),
          inputs: z
            .record(slotKey, dataPath({ mode: 'read', description: 'a file or folder the program reads' }))
            .default({})
            .describe('slot → path the program reads (inside a data dir)'),
          outputs: z
            .record(slotKey, dataPath({ mode: 'write', description: 'a file or folder the program writes' }))
            .default({})
            .describe('slot → path the program writes (inside a data dir)'),
          values: z
            .record(slotKey, z.union([z.string(), z.number(), z.boolean()]))
            .default({})
            .describe('slot → any other value (text, number, flag)'),
          gpus: z
            .union([
              z.string().regex(/^\d+(,\d+)*$/, { error: 'must be GPU ids like "0" or "0,1"' }),
              z.array(z.number().int().min(0)).min(1),
            ])
            .optional()
            .describe(
              'GPU ids for the program, passed in its gpuEnv variable (default CUDA_VISIBLE_DEVICES)',
            ),
        })
        .superRefine((v, ctx) => {
          const seen = new Map<string, string>();
          for (const group of ['inputs', 'outputs', 'values'] as const) {
            for (const k of Object.keys(v[group])) {
              const first = seen.get(k);
              if (first)
                ctx.addIssue({
                  code: 'custom',
                  path: [group, k],
                  message: `the slot {${k}} is already given in ${first}: each slot takes one value`,
                });
              else seen.set(k, group);
            }
          }
        }),
      output: z.strictObject({
        program: z.string(),
        args: z.array(z.string()).describe('the arguments the program got'),
        exit_code: z.number().int(),
        outputs: z.array(z.object({ path: z.string(), bytes: z.number().int().min(0) })),
        gpus: z.string().nullable(),
        duration_ms: z.number().min(0),
        peak_rss_bytes: z
          .number()
          .int()
          .min(0)
          .describe("the program's peak resident memory (its VmHWM, sampled every 250 ms)"),
      }),
    };
  },
  defaults: IMAGING_TYPE_DEFAULTS.external_program,
  handler: async (input, ctx) => {
    const { handedPrograms, fillArgs, progressParser, programTool } = await import('./programTemplate.js');
    const { findProgram, startTool } = await import('../lib/tool.js');
    const programs = handedPrograms();
    const program = programs[input.program];
    if (!program) {
      const known = Object.keys(programs);
      throw new DataInputError(
        `external_program: params.program = "${input.program}" is not a program in the settings: allowed: ${
          known.length ? known.join(', ') : 'none (add a programs section to the settings)'
        }`,
      );
    }
    const values: Record<string, string> = {};
    for (const [k, v] of Object.entries(input.inputs)) values[k] = v;
    for (const [k, v] of Object.entries(input.outputs)) values[k] = v;
    for (const [k, v] of Object.entries(input.values)) values[k] = String(v);
    const { args, outputs } = fillArgs(input.program, program, values);
    // Declared outputs must be where the job may write: checked before the program runs (their
    // folders made, as programs rarely make them) and after.
    for (const o of outputs) await mkdir(dirname(await ctx.checkWrite(o)), { recursive: true });
    if (!findProgram(program.path)) {
      throw new DataJobError(
        'ToolMissingError',
        `external_program: programs.${input.program}.path = "${program.path}" is not an executable program on this host`,
        { retryable: true, code: 'JOBD_TOOL_MISSING' },
      );
    }
    // The job's own GPU list wins; else the GPUs the daemon gave this attempt (the type's needs),
    // passed in the program's gpuEnv whatever its name; else what the daemon's environment has.
    const given = ctx.allocation?.gpus ?? [];
    const gpus =
      input.gpus !== undefined
        ? Array.isArray(input.gpus)
          ? input.gpus.join(',')
          : input.gpus
        : given.length > 0
          ? given.join(',')
          : (process.env[program.gpuEnv] ?? null);
    const progress = progressParser(program.progress);
    const run = startTool(
      {
        tool: programTool(input.program, program),
        program: program.path,
        args,
        ...(ctx.paths.work ? { cwd: ctx.paths.work } : {}),
        ...(gpus !== null ? { env: { [program.gpuEnv]: gpus } } : {}),
        ...(progress ? { progress } : {}),
        onLine: (line, stream) => ctx.logger.info(line, { stream }),
        ...(killGrace() !== undefined ? { killGraceMs: killGrace()! } : {}),
      },
      {
        signal: ctx.signal,
        progress: (p, m) => ctx.progress(p, m),
        log: (m, extra) => ctx.logger.info(m, extra),
      },
    );
    let peak = 0;
    const sample = async () => (peak = Math.max(peak, await highWaterMark(run.pid)));
    const timer = setInterval(() => void sample(), 250);
    await sample();
    let result: Awaited<typeof run.done>;
    try {
      result = await run.done;
    } finally {
      clearInterval(timer);
    }
    const found: { path: string; bytes: number }[] = [];
    const missing: string[] = [];
    for (const o of outputs) {
      const s = await stat(await ctx.checkWrite(o)).catch(() => null);
      if (s) found.push({ path: o, bytes: s.isFile() ? s.size : 0 });
      else missing.push(o);
    }
    if (missing.length) {
      throw new DataJobError(
        'OutputMissingError',
        `external_program: ${input.program} exited 0 but did not write ${missing.join(', ')} (programs.${input.program}.outputs)`,
        { retryable: false, details: { missing } },
      );
    }
    ctx.progress(100, 'done');
    return {
      program: input.program,
      args,
      exit_code: result.exitCode,
      outputs: found,
      gpus,
      duration_ms: result.durationMs,
      peak_rss_bytes: peak,
    };
  },
});

/** The program's kill grace: half the daemon's (the rest lets the handler finish), as the data types do. */
function killGrace(): number | undefined {
  const text = process.env.JOBD_DATA_SETTINGS;
  if (!text) return undefined;
  const v = (JSON.parse(text) as { killGraceMs?: unknown }).killGraceMs;
  return typeof v === 'number' ? v : undefined;
}

/** A live process's peak resident memory (VmHWM), 0 once it is gone. */
async function highWaterMark(pid: number): Promise<number> {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}
