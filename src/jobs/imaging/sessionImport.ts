/**
 * Built-in job type `session_import`: reads a microscope session (EPU, SerialEM, or a Leginon export),
 * records each exposure's metadata, and spawns per exposure a chain of child jobs, motion_correction →
 * ctf_estimation → fft_power_spectrum. It then waits for them without holding a slot, and when it
 * runs again with nothing left to import, it writes the session's summary and completes with it.
 *
 * Nothing is created twice: a child's id follows from this job's id, its resume count and the child's
 * key (`<exposure id>:<step>`), so a run repeated after a crash names the same children; a later run
 * skips the exposures its children already cover. In watch mode, each run polls the directory every
 * interval and returns as soon as a pass finds complete new exposures (at most max_per_pass).
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { z } from 'zod';
import type { ChildInfo } from '../../types.js';
import { defineJobType } from '../defineJobType.js';
import { dataPath } from '../dataPath.js';
import { lazySchema } from '../lazyZod.js';
import { DataInputError } from '../lib/errors.js';

const DAY_MS = 24 * 60 * 60_000;

/** The schemas, built on first use (the module loads no zod). */
const sessionSchemas = lazySchema((z) => {
  const input = z
    .strictObject({
      session_dir: dataPath({
        mode: 'read',
        kind: 'dir',
        mustExist: true,
        description: 'the session directory the microscope writes (EPU, SerialEM; for Leginon, the movies)',
      }),
      format: z
        .enum(['auto', 'epu', 'serialem', 'leginon'])
        .default('auto')
        .describe('auto: SerialEM when .mdoc files are present, else EPU (FoilHole_*_Data_*.xml)'),
      leginon_export: dataPath({
        mode: 'read',
        kind: 'file',
        mustExist: true,
        description: "Leginon's image table exported as JSON or CSV (format leginon)",
      }).optional(),
      output_dir: dataPath({
        mode: 'write',
        description: 'where session.json and each exposure folder (<output_dir>/<exposure>/) go',
      }),
      voltage_kv: z.number().positive().default(300).describe("kV, when an exposure's metadata has none"),
      cs_mm: z.number().positive().default(2.7).describe('spherical aberration, mm'),
      amplitude_contrast: z.number().min(0).lt(1).default(0.07),
      settle_ms: z
        .number()
        .int()
        .min(0)
        .default(5_000)
        .describe('a file changed less than this long ago may still be being written: it waits'),
      max_per_pass: z
        .number()
        .int()
        .min(1)
        .max(10_000)
        .default(200)
        .describe('new exposures per pass at most'),
      watch: z
        .strictObject({
          interval_ms: z.number().int().min(100).max(DAY_MS).default(10_000).describe('between passes'),
          stop_after_idle_ms: z
            .number()
            .int()
            .min(0)
            .max(DAY_MS / 2)
            .default(30 * 60_000)
            .describe(
              'stop watching after this long without a new exposure (at most 12 h: a run times out after a day)',
            ),
        })
        .optional()
        .describe('keep importing exposures as the microscope writes them'),
    })
    .superRefine((v, ctx) => {
      if (v.format === 'leginon' && !v.leginon_export)
        ctx.addIssue({
          code: 'custom',
          path: ['leginon_export'],
          message:
            'format leginon needs leginon_export (Leginon keeps its metadata in MySQL: export its image table)',
        });
      if (v.leginon_export && v.format !== 'leginon' && v.format !== 'auto')
        ctx.addIssue({
          code: 'custom',
          path: ['leginon_export'],
          message: `is for format leginon, not ${v.format}`,
        });
    });

  const exposureSummary = z.object({
    id: z.string(),
    state: z.string().describe('completed when its three jobs did, else the first unfinished or failed one'),
    defocus_u: z.number().optional(),
    defocus_v: z.number().optional(),
    astigmatism_angle: z.number().optional(),
    fit_resolution: z.number().optional(),
    total_drift: z.number().optional(),
  });

  const output = z.object({
    session_dir: z.string(),
    format: z.string().nullable(),
    session_file: z.string().describe('the session document: every exposure, its metadata and its jobs'),
    exposures: z.number().int(),
    completed: z.number().int(),
    failed: z.number().int(),
    summary: z.array(exposureSummary),
  });
  return { input, output };
});

type Input = z.output<ReturnType<typeof sessionSchemas>['input']>;
type ExposureSummary = z.input<ReturnType<typeof sessionSchemas>['output']>['summary'][number];

/** The imaging library loads when the job runs, not when jobctl reads the schema. */
const sessions = () => import('../../imaging/sessions/index.js');
type Exposure = import('../../imaging/sessions/index.js').Exposure;

interface SessionDocument {
  session_dir: string;
  format: string | null;
  exposures: Record<string, Exposure & { steps?: Record<string, unknown> }>;
}

async function readSession(file: string): Promise<SessionDocument | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as SessionDocument;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new DataInputError(`${file}: cannot read the session document: ${(err as Error).message}`);
  }
}

/** Whole or not at all: a crash mid-write leaves the previous document. */
async function writeSession(file: string, doc: SessionDocument): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, `${JSON.stringify(doc, null, 1)}\n`);
  await rename(tmp, file);
}

function summarise(doc: SessionDocument, children: ChildInfo[], exposureOfKey: (k: string) => string | null) {
  const byExposure = new Map<string, Map<string, ChildInfo>>();
  for (const c of children) {
    const id = exposureOfKey(c.key);
    if (id === null) continue;
    const steps = byExposure.get(id) ?? new Map<string, ChildInfo>();
    steps.set(c.key.slice(id.length + 1), c);
    byExposure.set(id, steps);
  }
  const summary: ExposureSummary[] = [];
  let completed = 0;
  let failed = 0;
  for (const id of Object.keys(doc.exposures).sort()) {
    const steps = byExposure.get(id);
    const e = doc.exposures[id]!;
    e.steps = Object.fromEntries(
      [...(steps ?? new Map<string, ChildInfo>())].map(([step, c]) => [
        step,
        { job: c.id, state: c.state, ...(c.error ? { error: c.error.message } : {}) },
      ]),
    );
    const order = ['motion', 'ctf', 'fft'].map((s) => steps?.get(s));
    const bad = order.find((c) => c === undefined || c.state !== 'completed');
    const state = bad === undefined ? 'completed' : (bad?.state ?? 'not submitted');
    if (state === 'completed') completed++;
    else if (state === 'failed' || state === 'cancelled') failed++;
    const ctf = (order[1]?.result ?? {}) as Record<string, unknown>;
    const motion = (order[0]?.result ?? {}) as Record<string, unknown>;
    const n = (v: unknown) => (typeof v === 'number' ? v : undefined);
    summary.push({
      id,
      state,
      ...(n(ctf.defocus_u) !== undefined ? { defocus_u: n(ctf.defocus_u) } : {}),
      ...(n(ctf.defocus_v) !== undefined ? { defocus_v: n(ctf.defocus_v) } : {}),
      ...(n(ctf.astigmatism_angle) !== undefined ? { astigmatism_angle: n(ctf.astigmatism_angle) } : {}),
      ...(n(ctf.fit_resolution) !== undefined ? { fit_resolution: n(ctf.fit_resolution) } : {}),
      ...(n(motion.total_drift) !== undefined ? { total_drift: n(motion.total_drift) } : {}),
    });
  }
  return { summary, completed, failed };
}

export default defineJobType({
  name: 'session_import',
  description:
    'Imports a microscope session (EPU XML, SerialEM .mdoc, or a Leginon image-table export): records each exposure (pixel size, dose, target defocus, stage position, exposure time, frames) and runs motion_correction → ctf_estimation → fft_power_spectrum on it, then writes a summary. With watch, keeps importing new exposures as they are written.',
  schemas: sessionSchemas,
  defaults: { mode: 'pooled', timeoutMs: DAY_MS, maxAttempts: 5 },
  handler: async (input: Input, ctx) => {
    const lib = await sessions();
    const sessionFile = join(input.output_dir, 'session.json');
    const children = ctx.children ?? [];
    const known = new Set(children.map((c) => lib.exposureOfKey(c.key)).filter((id) => id !== null));
    const doc: SessionDocument = (await readSession(sessionFile)) ?? {
      session_dir: input.session_dir,
      format: null,
      exposures: {},
    };
    const scope = { voltage: input.voltage_kv, cs: input.cs_mm, amplitudeContrast: input.amplitude_contrast };
    const format = input.leginon_export ? 'leginon' : input.format;
    const interval = input.watch?.interval_ms ?? Math.max(100, Math.min(1_000, input.settle_ms));
    // One-shot: files still being written get time to settle, then the import gives up on them.
    const patience = input.watch?.stop_after_idle_ms ?? input.settle_ms * 4 + 60_000;
    const started = Date.now();
    for (;;) {
      const pass = await lib.scanSession(input.session_dir, {
        format,
        ...(input.leginon_export ? { leginonExport: input.leginon_export } : {}),
        settleMs: input.settle_ms,
        now: Date.now(),
        skip: known,
        limit: input.max_per_pass,
      });
      doc.format = pass.format ?? doc.format;
      if (pass.ready.length > 0) {
        for (const e of pass.ready) doc.exposures[e.id] = e;
        await mkdir(await ctx.checkWrite(input.output_dir), { recursive: true });
        await writeSession(await ctx.checkWrite(sessionFile), doc);
        const jobs = pass.ready.flatMap((e) => lib.exposureJobs(e, input.output_dir, scope));
        await ctx.spawn(
          jobs.map((j) => ({
            key: j.key,
            type: j.type,
            params: j.params,
            ...(j.dependsOn ? { dependsOn: j.dependsOn } : {}),
          })),
        );
        const total = known.size + pass.ready.length;
        ctx.logger.info('session pass', { new: pass.ready.length, total, waiting: pass.waiting.length });
        ctx.progress(0, `${total} exposures submitted${pass.more ? ', more to read' : ''}`);
        // Resume once every chain finished, whatever its outcome: a failed exposure does not stop the
        // session, the summary reports it.
        return ctx.waitForChildren({ onChildFailure: 'ignore' });
      }
      const idle = Date.now() - started;
      if (!input.watch && pass.waiting.length === 0) break;
      if (idle >= patience) {
        if (input.watch) break;
        throw new DataInputError(
          `${input.session_dir}: ${pass.waiting.length} exposures stayed incomplete for ${Math.round(idle / 1000)} s (a movie or its metadata missing, or still changing): ${pass.waiting.slice(0, 10).join(', ')}`,
        );
      }
      await sleep(interval, undefined, { signal: ctx.signal });
    }
    const { summary, completed, failed } = summarise(doc, children, lib.exposureOfKey);
    await mkdir(await ctx.checkWrite(input.output_dir), { recursive: true });
    await writeSession(await ctx.checkWrite(sessionFile), doc);
    ctx.progress(100, `${completed} of ${summary.length} exposures processed`);
    return {
      session_dir: input.session_dir,
      format: doc.format,
      session_file: sessionFile,
      exposures: summary.length,
      completed,
      failed,
      summary,
    };
  },
});
