/**
 * How many jobs the slots let the claim loop take ahead of a free slot, from the recent run time:
 * short jobs by the 50 ms wait rule, jobs of up to a second (isolated jobs: mostly process start-up)
 * one ahead, so the next claim is not on the path between one job's end and the next one's start;
 * long jobs none.
 */
import { describe, expect, it } from 'vitest';
import { Slots, type SlotsOptions } from '../../src/worker/slots.js';
import { Wakeup } from '../../src/worker/wakeup.js';
import type { JobDoc } from '../../src/types.js';

const job = (id: string): JobDoc =>
  ({ _id: id, type: 't', lease: { owner: 'w', token: 't', expiresAt: new Date() } }) as unknown as JobDoc;

/** Slots of one type `t`, recording the jobs they start (and announce, with `extra`). */
function newSlots(
  concurrency: number,
  extra: Partial<SlotsOptions> = {},
): { slots: Slots; started: string[] } {
  const started: string[] = [];
  const slots = new Slots({
    concurrency,
    claimBatchSize: 10,
    jobTypes: { t: {} },
    wakeup: new Wakeup(),
    start: (j) => started.push(j._id),
    ...extra,
  });
  return { slots, started };
}

/** Slots whose jobs have run `runMs` each, with nothing running now. */
function slotsAfterRuns(runMs: number, concurrency = 1): { slots: Slots; started: string[] } {
  const { slots, started } = newSlots(concurrency);
  slots.accept(job('warm'));
  slots.release(job('warm'), runMs);
  started.length = 0;
  return { slots, started };
}

describe('claiming ahead', () => {
  it('claims nothing ahead before any job finished', () => {
    const { slots } = newSlots(1);
    expect(slots.capacity()).toBe(1);
  });

  it('short jobs: as many ahead as wait about 50 ms, at most a batch', () => {
    expect(slotsAfterRuns(10).slots.capacity()).toBe(1 + 5);
    expect(slotsAfterRuns(1).slots.capacity()).toBe(1 + 10);
  });

  it('jobs of up to a second (an isolated job): one ahead, which starts when the running one ends', () => {
    const { slots, started } = slotsAfterRuns(200);
    expect(slots.capacity()).toBe(2);
    slots.accept(job('a'));
    expect(slots.free()).toBe(1);
    slots.accept(job('b'));
    expect(started).toEqual(['a']);
    expect(slots.waiting().map((j) => j._id)).toEqual(['b']);
    expect(slots.free()).toBe(0);
    slots.release(job('a'), 200);
    expect(started).toEqual(['a', 'b']);
    expect(slotsAfterRuns(1_000).slots.capacity()).toBe(2);
  });

  it('a claim waits for half the capacity, except that a short ahead queue is refilled as soon as it has room', () => {
    // Short jobs: claims in batches, as before (10 ahead of 1 slot: wait for 6 places).
    expect(slotsAfterRuns(1).slots.claimAtLeast()).toBe(6);
    expect(slotsAfterRuns(1, 8).slots.claimAtLeast()).toBe(9);
    // Isolated-like jobs at concurrency 2 (one ahead): one place is enough, so when a job ends and the
    // one ahead takes its slot, the next is claimed while both run, not after the second one ends too.
    const { slots, started } = slotsAfterRuns(200, 2);
    expect(slots.capacity()).toBe(3);
    expect(slots.claimAtLeast()).toBe(1);
    for (const id of ['a', 'b', 'c']) slots.accept(job(id));
    slots.release(job('a'), 200);
    expect(started).toEqual(['a', 'b', 'c']);
    expect(slots.free()).toBe(1);
    expect(slots.free()).toBeGreaterThanOrEqual(slots.claimAtLeast());
    // Long jobs, none ahead: wait for half the slots, as before.
    expect(slotsAfterRuns(60_000, 4).slots.claimAtLeast()).toBe(2);
  });

  it('longer jobs are never claimed ahead', () => {
    expect(slotsAfterRuns(1_001).slots.capacity()).toBe(1);
    expect(slotsAfterRuns(60_000, 4).slots.capacity()).toBe(4);
  });

  it('a job that waits claimed ahead is announced (its child may start), and its leaving without a start too', () => {
    const ahead: string[] = [];
    const dropped: string[] = [];
    const { slots, started } = newSlots(1, {
      ahead: (j) => ahead.push(j._id),
      dropped: (j) => dropped.push(j._id),
    });
    slots.accept(job('warm'));
    slots.release(job('warm'), 200);
    // Started at once: not announced.
    slots.accept(job('a'));
    expect(ahead).toEqual([]);
    slots.accept(job('b'));
    slots.accept(job('c'));
    expect(ahead).toEqual(['b', 'c']);
    // b starts when a ends: nothing dropped.
    slots.release(job('a'), 200);
    expect(started).toEqual(['warm', 'a', 'b']);
    expect(dropped).toEqual([]);
    // c's lease is lost while it waits; d is handed back at shutdown.
    expect(slots.drop('c')?._id).toBe('c');
    slots.accept(job('d'));
    slots.close();
    expect(slots.takeWaiting().map((j) => j._id)).toEqual(['d']);
    expect(dropped).toEqual(['c', 'd']);
    // Not waiting here: nothing to drop.
    expect(slots.drop('zz')).toBeUndefined();
    expect(dropped).toEqual(['c', 'd']);
  });
});
