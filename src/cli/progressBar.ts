/** Progress bars for terminals: one line per job (watch, enqueue --wait) or per run (migrate). */

/** `[#######.............]  35%`, `width` characters between the brackets. */
export function bar(percent: number, width = 24): string {
  const p = Math.max(0, Math.min(100, Number.isFinite(percent) ? percent : 0));
  const full = Math.round((p / 100) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${p.toFixed(0).padStart(3)}%`;
}

export function formatEta(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms) || ms < 0) return '--';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * Follows one job's progress samples and derives its rate (percent per second, over the samples of the
 * last `windowMs`) and the ETA at that rate.
 */
export class RateTracker {
  private samples: { t: number; p: number }[] = [];
  constructor(private readonly windowMs = 30_000) {}

  add(t: number, percent: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && percent < last.p) this.samples = []; // a new attempt started over
    if (!last || last.p !== percent || t - last.t > 1000) this.samples.push({ t, p: percent });
    while (this.samples.length > 2 && t - this.samples[0]!.t > this.windowMs) this.samples.shift();
  }

  /** Percent per second, null until two samples apart in time and progress. */
  rate(): number | null {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.t <= first.t || last.p <= first.p) return null;
    return ((last.p - first.p) * 1000) / (last.t - first.t);
  }

  etaMs(): number | null {
    const r = this.rate();
    const last = this.samples[this.samples.length - 1];
    return r === null || !last ? null : ((100 - last.p) / r) * 1000;
  }
}

/** A run's progress on stderr (`done` of `total`, rate, ETA); silent when stderr is not a terminal. */
export class RunProgress {
  private readonly started = Date.now();
  private lastDraw = 0;
  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly enabled = !!process.stderr.isTTY,
  ) {}

  update(done: number, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const secs = Math.max(0.001, (now - this.started) / 1000);
    const rate = done / secs;
    const eta = rate > 0 ? ((this.total - done) / rate) * 1000 : null;
    const pct = this.total === 0 ? 100 : (done / this.total) * 100;
    process.stderr.write(
      `\r${this.label} ${bar(pct)} ${done}/${this.total} ${rate.toFixed(0)}/s ETA ${formatEta(eta)}\x1b[K`,
    );
  }

  finish(done: number): void {
    if (!this.enabled) return;
    this.update(done, true);
    process.stderr.write('\n');
  }
}
