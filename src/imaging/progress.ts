import { KernelAbortedError } from './errors.js';

/** Reports progress of a long kernel: fraction in [0, 1] and a short human message. */
export type ProgressFn = (fraction: number, message: string) => void;

/** What every long kernel accepts: checked between planes, tiles and iterations. */
export interface KernelControl {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new KernelAbortedError(what, { cause: signal.reason });
}

/** Lets a pending abort (a timer, a message from the parent) run between synchronous steps. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
