import { defineJobType } from '../defineJobType.js';
import type { Zod } from '../lazyZod.js';
import { DataInputError } from '../lib/errors.js';
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

const angstrom = (z: Zod, what: string) => z.number().positive().optional().describe(`${what}, Å`);

/** Built-in job type `ctf_estimation`: defocus and astigmatism of a micrograph, CTFFIND-style. */
export default defineJobType({
  name: 'ctf_estimation',
  description:
    'Estimates defocus U/V and the astigmatism angle of a micrograph (MRC or TIFF) from its tile-averaged power spectrum: background subtraction, a search and a refinement of the CTF model over a resolution band. Writes a diagnostic PNG (observed spectrum left, fitted CTF² right) when asked.',
  schemas: (z) => ({
    input: z.strictObject({
      input: imageInput('the micrograph: an MRC or TIFF file'),
      diagnostic_png: outputFile('.png', 'where the diagnostic image goes').optional(),
      plane: plane(),
      pixel_size: z
        .number()
        .positive()
        .optional()
        .describe("Å per pixel; default: the file's header (required when the header has none)"),
      voltage_kv: z.number().positive().default(300).describe('acceleration voltage, kV'),
      cs_mm: z.number().positive().default(2.7).describe('spherical aberration, mm'),
      amplitude_contrast: z.number().min(0).lt(1).default(0.07).describe('amplitude contrast fraction'),
      tile_size: tileSize().describe(
        'side of the averaged tiles (2^a·3^b·5^c, a multiple of 32); default 512, or the largest that fits a smaller image',
      ),
      tiles: z.number().int().min(1).optional().describe('average at most this many tiles (default: all)'),
      min_resolution: angstrom(z, 'low-resolution end of the fit band (default 30)'),
      max_resolution: angstrom(z, 'high-resolution end of the fit band (default 5, at most Nyquist)'),
      min_defocus: angstrom(z, 'smallest defocus searched (default 3000)'),
      max_defocus: angstrom(z, 'largest defocus searched (default 50000)'),
      max_astigmatism: angstrom(z, 'largest |defocus U − defocus V| searched (default 3000)'),
    }),
    output: z.strictObject({
      input: z.string(),
      defocus_u: z.number().describe('Å, underfocus positive'),
      defocus_v: z.number().describe('Å'),
      astigmatism_angle: z.number().describe('degrees of the defocus-U axis from x'),
      score: z.number().describe('cross-correlation of the spectrum and CTF² over the band'),
      fit_resolution: z.number().describe('Å: the resolution up to which the Thon rings fit'),
      pixel_size: z.number(),
      pixel_size_from: z.enum(['params', 'header']),
      voltage_kv: z.number(),
      cs_mm: z.number(),
      amplitude_contrast: z.number(),
      tile_size: z.number().int(),
      tiles_used: z.number().int(),
      diagnostic_png: z.string().optional(),
      duration_ms: z.number().min(0),
      peak_rss_bytes: z.number().int().min(0),
    }),
  }),
  defaults: IMAGING_TYPE_DEFAULTS.ctf_estimation,
  handler: async (input, ctx) => {
    const started = Date.now();
    const { estimateCtf, writeCtfDiagnostic } = await import('../../imaging/kernels/ctf.js');
    const { prevFftSize } = await import('../../imaging/kernels/fft.js');
    const img = await kernelStep('ctf_estimation', () => readPlane(input.input, input.plane));
    const pixelSize = input.pixel_size ?? img.pixelSize;
    if (pixelSize === undefined) {
      throw new DataInputError(
        `ctf_estimation: params.pixel_size is missing and ${input.input} gives no pixel size in its header: give pixel_size (Å per pixel)`,
      );
    }
    ctx.progress(5, `read ${img.width}×${img.height}`);
    const scope = {
      voltageKv: input.voltage_kv,
      csMm: input.cs_mm,
      amplitudeContrast: input.amplitude_contrast,
      pixelSize,
    };
    const opt = <K extends string, V>(k: K, v: V | undefined) =>
      (v !== undefined ? { [k]: v } : {}) as Partial<Record<K, V>>;
    const r = await kernelStep('ctf_estimation', () =>
      estimateCtf(
        img.image,
        img.width,
        img.height,
        {
          ...scope,
          tileSize: input.tile_size ?? Math.min(512, prevFftSize(Math.min(img.width, img.height))),
          ...opt('tiles', input.tiles),
          ...opt('minResolution', input.min_resolution),
          ...opt('maxResolution', input.max_resolution),
          ...opt('minDefocus', input.min_defocus),
          ...opt('maxDefocus', input.max_defocus),
          ...opt('maxAstigmatism', input.max_astigmatism),
        },
        kernelControl(ctx, 0.05, 0.9),
      ),
    );
    if (input.diagnostic_png !== undefined)
      await writeCtfDiagnostic(await prepareOutput(ctx, input.diagnostic_png), r, scope);
    ctx.progress(100, 'fitted');
    return {
      input: input.input,
      defocus_u: r.defocusU,
      defocus_v: r.defocusV,
      astigmatism_angle: r.astigmatismAngle,
      score: r.score,
      fit_resolution: r.fitResolution,
      pixel_size: pixelSize,
      pixel_size_from: input.pixel_size !== undefined ? ('params' as const) : ('header' as const),
      voltage_kv: input.voltage_kv,
      cs_mm: input.cs_mm,
      amplitude_contrast: input.amplitude_contrast,
      tile_size: r.tileSize,
      tiles_used: r.tilesUsed,
      ...(input.diagnostic_png !== undefined ? { diagnostic_png: input.diagnostic_png } : {}),
      duration_ms: Date.now() - started,
      peak_rss_bytes: peakRssBytes(),
    };
  },
});
