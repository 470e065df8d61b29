/**
 * What a microscope session looks like from its jobs: the session_import job and, per exposure, the
 * results its motion_correction → ctf_estimation → fft_power_spectrum chain recorded (defocus,
 * astigmatism, CTF fit resolution, total drift) and the images they wrote. Read from the jobs, not the
 * session document, so it is live while exposures are still being processed.
 */
import { exposureOfKey, STEPS } from '../imaging/sessions/workflow.js';
import type { ChildResult } from '../store/index.js';
import type { JobDoc, JobState } from '../types.js';

export type SessionStep = (typeof STEPS)[number];

export interface SessionExposure {
  id: string;
  /** completed when its three jobs did, else the first unfinished or failed step's state. */
  state: JobState | 'not submitted';
  /** When its last finished step finished (null while none has). */
  at: Date | null;
  defocusU: number | null;
  defocusV: number | null;
  /** |defocus U − defocus V|, Å. */
  astigmatism: number | null;
  astigmatismAngle: number | null;
  fitResolution: number | null;
  totalDrift: number | null;
  /** Images the steps wrote (absolute paths): the power spectrum, the CTF fit diagnostic, the aligned sum (MRC). */
  images: { powerSpectrum: string | null; ctfDiagnostic: string | null; alignedSum: string | null };
  jobs: Partial<Record<SessionStep, { id: string; state: JobState; error: string | null }>>;
}

export interface SessionView {
  job: JobDoc;
  sessionDir: string | null;
  outputDir: string | null;
  counts: { exposures: number; completed: number; failed: number };
  exposures: SessionExposure[];
}

/** The step key of a spawned job: its spawnKey is `<parent>/<resumes>/<key>`. */
function keyOf(j: ChildResult): string | null {
  if (!j.spawnKey) return null;
  const parts = j.spawnKey.split('/');
  return parts.length >= 3 ? parts.slice(2).join('/') : null;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

/** `root` is the session_import job, `jobs` its children. */
export function sessionView(root: JobDoc, jobs: readonly ChildResult[]): SessionView {
  const byExposure = new Map<string, Map<SessionStep, ChildResult>>();
  for (const j of jobs) {
    if (j.parentId !== root._id) continue;
    const key = keyOf(j);
    const exposure = key === null ? null : exposureOfKey(key);
    if (exposure === null || key === null) continue;
    const step = key.slice(exposure.length + 1) as SessionStep;
    const steps = byExposure.get(exposure) ?? new Map<SessionStep, ChildResult>();
    // A later resume re-spawning a step keeps the newest job.
    const had = steps.get(step);
    if (!had || had.createdAt <= j.createdAt) steps.set(step, j);
    byExposure.set(exposure, steps);
  }
  const exposures: SessionExposure[] = [];
  let completed = 0;
  let failed = 0;
  for (const [id, steps] of byExposure) {
    const order = STEPS.map((s) => steps.get(s));
    const bad = order.find((j) => j === undefined || j.state !== 'completed');
    const state = bad === undefined ? 'completed' : (bad?.state ?? 'not submitted');
    if (state === 'completed') completed++;
    else if (state === 'failed' || state === 'cancelled') failed++;
    const [motion, ctf, fft] = order;
    const ok = (j: ChildResult | undefined) =>
      j?.state === 'completed' ? ((j.result ?? {}) as Record<string, unknown>) : {};
    const c = ok(ctf);
    const u = num(c.defocus_u);
    const v = num(c.defocus_v);
    const finished = order.map((j) => j?.finishedAt ?? null).filter((d): d is Date => d instanceof Date);
    exposures.push({
      id,
      state,
      at: finished.length > 0 ? new Date(Math.max(...finished.map((d) => d.getTime()))) : null,
      defocusU: u,
      defocusV: v,
      astigmatism: u !== null && v !== null ? Math.abs(u - v) : null,
      astigmatismAngle: num(c.astigmatism_angle),
      fitResolution: num(c.fit_resolution),
      totalDrift: num(ok(motion).total_drift),
      images: {
        powerSpectrum: str(ok(fft).output_png),
        ctfDiagnostic: str(c.diagnostic_png),
        alignedSum: str(ok(motion).output_sum),
      },
      jobs: Object.fromEntries(
        STEPS.flatMap((s) => {
          const j = steps.get(s);
          return j ? [[s, { id: j._id, state: j.state, error: j.lastError?.message ?? null }]] : [];
        }),
      ),
    });
  }
  // Oldest first: finished exposures by when they finished, the rest after them by id.
  exposures.sort((a, b) => {
    if (a.at && b.at) return a.at.getTime() - b.at.getTime() || a.id.localeCompare(b.id);
    if (a.at || b.at) return a.at ? -1 : 1;
    return a.id.localeCompare(b.id);
  });
  const params = (root.params ?? {}) as Record<string, unknown>;
  return {
    job: root,
    sessionDir: str(params.session_dir),
    outputDir: str(params.output_dir),
    counts: { exposures: exposures.length, completed, failed },
    exposures,
  };
}
