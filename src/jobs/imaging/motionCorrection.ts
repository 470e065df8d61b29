import { availableParallelism } from 'node:os';
import { defineJobType } from '../defineJobType.js';
import {
  imageInput,
  IMAGING_TYPE_DEFAULTS,
  kernelControl,
  kernelStep,
  outputFile,
  peakRssBytes,
  prepareOutput,
} from './kernelKit.js';

/** Built-in job type `motion_correction`: whole-frame alignment of a movie, its aligned sum and trajectory. */
export default defineJobType({
  name: 'motion_correction',
  description:
    'Corrects whole-frame motion in a movie (an MRC or TIFF stack of frames): frame shifts by FFT cross-correlation with a sub-pixel peak fit, aligned iteratively to the running sum, then the aligned sum, optionally dose-weighted. Writes the sum (MRC) and the shift trajectory (JSON).',
  schemas: (z) => ({
    input: z.strictObject({
      input: imageInput('the movie: an MRC or TIFF stack of frames'),
      output_sum: outputFile('.mrc', 'where the aligned sum goes (float32 MRC)'),
      output_shifts: outputFile('.json', 'where the shift trajectory goes (JSON)'),
      pixel_size: z
        .number()
        .positive()
        .optional()
        .describe(
          "Å per pixel; default: the file's header, else 1 (needed for the B-factor and dose weighting)",
        ),
      b_factor: z.number().min(0).default(150).describe('Å², low-pass of the alignment, exp(−B k²/4)'),
      max_shift: z.number().positive().default(40).describe('largest shift searched per step, pixels'),
      iterations: z.number().int().min(1).max(100).default(10),
      tolerance: z
        .number()
        .positive()
        .default(0.01)
        .describe('stop when no shift changes by more than this, pixels'),
      align_size: z
        .number()
        .int()
        .min(64)
        .default(1024)
        .describe('largest side of the alignment grid; frames are binned by powers of two to fit'),
      dose_per_frame: z
        .number()
        .positive()
        .optional()
        .describe('e⁻/Å² per frame: dose-weights the sum (Grant & Grigorieff 2015) when given'),
      pre_exposure: z.number().min(0).default(0).describe('e⁻/Å² before the first frame'),
      voltage_kv: z.number().positive().default(300).describe('acceleration voltage, kV (dose weighting)'),
      threads: z
        .number()
        .int()
        .min(1)
        .max(64)
        .default(2)
        .describe(
          "worker threads for the frames' FFTs and cross-correlations; capped at the CPUs the job was given (its type's needs.cpus), else at the machine's",
        ),
    }),
    output: z.strictObject({
      input: z.string(),
      output_sum: z.string(),
      output_shifts: z.string(),
      width: z.number().int(),
      height: z.number().int(),
      frames: z.number().int(),
      pixel_size: z.number(),
      binning: z.number().int(),
      iterations: z.number().int(),
      converged: z.boolean(),
      dose_weighted: z.boolean(),
      threads: z.number().int().describe('worker threads used'),
      /** Shift applied to each frame, pixels, frame 0 at (0, 0). */
      shifts: z.array(z.object({ x: z.number(), y: z.number() })),
      total_drift: z.number().describe('pixels along the trajectory'),
      duration_ms: z.number().min(0),
      peak_rss_bytes: z.number().int().min(0),
    }),
  }),
  defaults: IMAGING_TYPE_DEFAULTS.motion_correction,
  handler: async (input, ctx) => {
    const started = Date.now();
    const { correctMotion, writeMotionOutputs } = await import('../../imaging/kernels/motion.js');
    const allowance = ctx.allocation?.cpus ? ctx.allocation.cpus : availableParallelism();
    const threads = Math.max(1, Math.min(input.threads, allowance));
    const r = await kernelStep('motion_correction', () =>
      correctMotion(
        input.input,
        {
          ...(input.pixel_size !== undefined ? { pixelSize: input.pixel_size } : {}),
          bFactor: input.b_factor,
          maxShift: input.max_shift,
          iterations: input.iterations,
          tolerance: input.tolerance,
          alignSize: input.align_size,
          threads,
          ...(input.dose_per_frame !== undefined
            ? {
                doseWeighting: {
                  dosePerFrame: input.dose_per_frame,
                  preExposure: input.pre_exposure,
                  voltageKv: input.voltage_kv,
                },
              }
            : {}),
        },
        kernelControl(ctx, 0, 0.95),
      ),
    );
    await writeMotionOutputs(r, {
      sumMrc: await prepareOutput(ctx, input.output_sum),
      trajectoryJson: await prepareOutput(ctx, input.output_shifts),
    });
    ctx.progress(100, 'written');
    let drift = 0;
    for (let i = 1; i < r.shifts.length; i++)
      drift += Math.hypot(r.shifts[i]!.x - r.shifts[i - 1]!.x, r.shifts[i]!.y - r.shifts[i - 1]!.y);
    return {
      input: input.input,
      output_sum: input.output_sum,
      output_shifts: input.output_shifts,
      width: r.width,
      height: r.height,
      frames: r.frames,
      pixel_size: r.pixelSize,
      binning: r.binning,
      iterations: r.iterations,
      converged: r.converged,
      dose_weighted: input.dose_per_frame !== undefined,
      threads: r.threads,
      shifts: r.shifts.map((s) => ({ x: round4(s.x), y: round4(s.y) })),
      total_drift: round4(drift),
      duration_ms: Date.now() - started,
      peak_rss_bytes: peakRssBytes(),
    };
  },
});

function round4(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
