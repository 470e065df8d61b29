/**
 * Samples a running child's RSS and CPU (pidusage), records the peak, and reports once its RSS passes
 * the job's memory limit. One sample at a time: a slow /proc read is never stacked.
 */
import pidusage from 'pidusage';
import { MemoryLimitError } from '../errors.js';
import type { Sampled } from './outcome.js';

export interface SamplerOptions {
  pid(): number | undefined;
  /** Still worth sampling (the job runs in this child and has not ended). */
  live(): boolean;
  intervalMs: number;
  /** pidusage's cache age for the pid, ms. */
  maxAgeMs: number;
  limitBytes: number | undefined;
  sampled: Sampled;
  over(err: MemoryLimitError): void;
}

/** Starts sampling; clear the returned timer when the job ends. */
export function sampleChild(o: SamplerOptions): NodeJS.Timeout {
  let sampling = false;
  return setInterval(
    () => {
      const pid = o.pid();
      if (sampling || pid === undefined || !o.live()) return;
      sampling = true;
      pidusage(pid, { maxage: o.maxAgeMs })
        .then((s) => {
          if (!o.live()) return;
          o.sampled.peakRssBytes = Math.max(o.sampled.peakRssBytes ?? 0, s.memory);
          o.sampled.lastCpuMs = s.ctime;
          if (o.limitBytes !== undefined && s.memory > o.limitBytes) {
            o.over(new MemoryLimitError(o.limitBytes, s.memory));
          }
        })
        .catch(() => {
          // the child exited between samples; its exit is handled elsewhere
        })
        .finally(() => (sampling = false));
    },
    Math.max(10, o.intervalMs),
  );
}
