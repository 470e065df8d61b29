import { defineJobType } from '../defineJobType.js';
import {
  imageInput,
  IMAGING_TYPE_DEFAULTS,
  kernelControl,
  kernelStep,
  outputFile,
  peakRssBytes,
  plane,
  prepareOutput,
  readPlane,
  tileSize,
} from './kernelKit.js';

/** Built-in job type `fft_power_spectrum`: the log-scaled 2D power spectrum of a micrograph, as MRC and PNG. */
export default defineJobType({
  name: 'fft_power_spectrum',
  description:
    'Computes the 2D power spectrum of a micrograph (MRC or TIFF), optionally averaged over tiles (periodogram averaging), and writes it log-scaled, zero frequency at the centre, as an MRC image and a PNG.',
  schemas: (z) => ({
    input: z.strictObject({
      input: imageInput('the micrograph: an MRC or TIFF file'),
      output_mrc: outputFile('.mrc', 'where the log power spectrum goes, as a float32 MRC image'),
      output_png: outputFile('.png', 'where the log power spectrum goes, as an 8-bit PNG'),
      plane: plane(),
      tile_size: tileSize(),
      tiles: z
        .number()
        .int()
        .min(1)
        .optional()
        .describe('average at most this many tiles, spread over the image (default: all, half-overlapping)'),
      window: z.enum(['hann', 'none']).default('hann').describe('taper applied to each tile'),
    }),
    output: z.strictObject({
      input: z.string(),
      output_mrc: z.string(),
      output_png: z.string(),
      width: z.number().int().describe('of the micrograph'),
      height: z.number().int(),
      size: z.number().int().describe('side of the square spectrum'),
      tiles_used: z.number().int(),
      duration_ms: z.number().min(0),
      peak_rss_bytes: z.number().int().min(0),
    }),
  }),
  defaults: IMAGING_TYPE_DEFAULTS.fft_power_spectrum,
  handler: async (input, ctx) => {
    const started = Date.now();
    const { powerSpectrum, writePowerSpectrum } = await import('../../imaging/kernels/powerSpectrum.js');
    const img = await kernelStep('fft_power_spectrum', () => readPlane(input.input, input.plane));
    ctx.progress(5, `read ${img.width}×${img.height}`);
    const ps = await kernelStep('fft_power_spectrum', () =>
      powerSpectrum(
        img.image,
        img.width,
        img.height,
        {
          ...(input.tile_size !== undefined ? { tileSize: input.tile_size } : {}),
          ...(input.tiles !== undefined ? { tiles: input.tiles } : {}),
          window: input.window,
        },
        kernelControl(ctx, 0.05, 0.85),
      ),
    );
    const mrc = await prepareOutput(ctx, input.output_mrc);
    const png = await prepareOutput(ctx, input.output_png);
    await writePowerSpectrum(ps, { mrc, png });
    ctx.progress(100, 'written');
    return {
      input: input.input,
      output_mrc: input.output_mrc,
      output_png: input.output_png,
      width: img.width,
      height: img.height,
      size: ps.size,
      tiles_used: ps.tilesUsed,
      duration_ms: Date.now() - started,
      peak_rss_bytes: peakRssBytes(),
    };
  },
});
