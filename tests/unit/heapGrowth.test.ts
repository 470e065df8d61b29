/**
 * worker.heapGrowthPercent (worker/heapGrowth.ts): a process that applies it keeps its old generation
 * near its live size while it churns through objects that are promoted and then die, as a busy daemon
 * does. Real processes (tests/fixtures/heapChurn.ts), each with its own V8.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { applyHeapGrowth } from '../../src/worker/heapGrowth.js';

const FIXTURE = resolve(import.meta.dirname, '../fixtures/heapChurn.ts');

async function churn(percent: number): Promise<{ liveMB: number; peakOldMB: number }> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--import', 'tsx', FIXTURE, String(percent)],
    { timeout: 120_000 },
  );
  return JSON.parse(stdout) as { liveMB: number; peakOldMB: number };
}

/**
 * With 50%, V8 collects once the old generation is 1.5× what was live at the last full collection;
 * what is live while churning (the live set and the churn still held) and the allocation before a
 * started collection finishes come on top: 2.8× the live set after the churn is the bound. V8's own
 * heuristics let this churn grow the old generation to about 4–5× (188–261 MB for 48 MB live here).
 */
const BOUND = 2.8;

describe('heap growth', () => {
  it('keeps the old generation within 2.8× the live set at 50%, which V8 left to itself does not', async () => {
    const [tight, loose] = await Promise.all([churn(50), churn(0)]);
    expect(tight.liveMB).toBeGreaterThan(40);
    expect(tight.peakOldMB).toBeLessThanOrEqual(tight.liveMB * BOUND);
    expect(loose.peakOldMB).toBeGreaterThan(loose.liveMB * BOUND);
  }, 180_000);

  it('refuses a percent that is not a non-negative integer, naming the value', () => {
    expect(() => applyHeapGrowth(-1)).toThrow('heap growth percent must be a non-negative integer, got -1');
    expect(() => applyHeapGrowth(1.5)).toThrow('got 1.5');
  });
});
