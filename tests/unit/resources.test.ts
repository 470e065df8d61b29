/**
 * The resource ledger and the slots' accounting: needs taken on accept and given back on release,
 * drop and hand-back; the claimable types and a batch's admission follow the free capacity.
 */
import { describe, expect, it } from 'vitest';
import { ResourceLedger, whyNeverFits } from '../../src/worker/resources.js';
import { Slots } from '../../src/worker/slots.js';
import { Wakeup } from '../../src/worker/wakeup.js';
import type { JobDoc, ResourceAllocation } from '../../src/types.js';

const cap = { cpus: 4, memoryMb: 1000, gpus: [1, 0] };

describe('ResourceLedger', () => {
  it('gives the lowest free GPU ids and takes them back', () => {
    const l = new ResourceLedger(cap);
    const a = l.take({ gpus: 1, memoryMb: 400 })!;
    const b = l.take({ gpus: 1, cpus: 2 })!;
    expect([a.gpus, b.gpus]).toEqual([[0], [1]]);
    expect(l.take({ gpus: 1 })).toBeNull();
    expect(l.used()).toEqual({ cpus: 2, memoryMb: 400, gpus: [0, 1] });
    l.give(a);
    expect(l.take({ gpus: 1, memoryMb: 600 })!.gpus).toEqual([0]);
    expect([l.fits({ memoryMb: 400 }), l.fits({ memoryMb: 401 }), l.fits({ cpus: 3 })]).toEqual([
      true,
      false,
      false,
    ]);
    expect(l.fits({ gpus: 0 })).toBe(true); // needs nothing
  });

  it('a trial admits in order while the needs fit what it left', () => {
    const admit = new ResourceLedger(cap).trial();
    expect([admit({ gpus: 1 }), admit({ gpus: 1 }), admit({ gpus: 1 }), admit(undefined)]).toEqual([
      true,
      true,
      false,
      true,
    ]);
  });

  it('names what never fits', () => {
    expect(whyNeverFits({ gpus: 3, memoryMb: 2000 }, cap)).toBe(
      'needs 3 GPUs (resources.gpus has 2), 2000 MiB of memory (resources.memoryMb is 1000)',
    );
    expect(whyNeverFits({ cpus: 4 }, cap)).toBeNull();
  });
});

describe('Slots with resources', () => {
  const job = (id: string, type: string): JobDoc =>
    ({ _id: id, type, lease: { owner: 'w', token: 't', expiresAt: new Date() } }) as unknown as JobDoc;
  const setup = () => {
    const started: [string, ResourceAllocation | undefined][] = [];
    const slots = new Slots({
      concurrency: 4,
      claimBatchSize: 10,
      jobTypes: { gpu: { needs: { gpus: 1 } }, plain: {} },
      resources: new ResourceLedger({ cpus: 4, memoryMb: 1000, gpus: [7] }),
      wakeup: new Wakeup(),
      start: (j, a) => started.push([j._id, a]),
    });
    return { slots, started };
  };

  it('leaves out a type whose needs do not fit, and takes it back when the job is released', () => {
    const { slots, started } = setup();
    const c = slots.claimable();
    expect(c.types.sort()).toEqual(['gpu', 'plain']);
    expect(c.resources?.types).toEqual(new Set(['gpu']));
    expect([c.resources!.admit('gpu'), c.resources!.admit('gpu'), c.resources!.admit('plain')]).toEqual([
      true,
      false,
      true,
    ]);
    slots.accept(job('a', 'gpu'));
    expect(started).toEqual([['a', { cpus: 0, memoryMb: 0, gpus: [7] }]]);
    expect(slots.claimable().types).toEqual(['plain']);
    expect(slots.claimable().limited).toBe(true);
    slots.release(job('a', 'gpu'), 5);
    expect(slots.claimable().types.sort()).toEqual(['gpu', 'plain']);
    expect(slots.resourcesUsed()).toEqual({ cpus: 0, memoryMb: 0, gpus: [] });
  });

  it('a job that does not fit waits claimed ahead until a release makes room; drop gives back', () => {
    const { slots, started } = setup();
    slots.accept(job('a', 'gpu'));
    slots.accept(job('b', 'gpu')); // a recovered claim: no GPU free
    slots.accept(job('c', 'plain'));
    expect(started.map(([id]) => id)).toEqual(['a', 'c']);
    expect(slots.waiting().map((j) => j._id)).toEqual(['b']);
    slots.release(job('a', 'gpu'), 5);
    expect(started.map(([id]) => id)).toEqual(['a', 'c', 'b']);
    expect(started[2]![1]!.gpus).toEqual([7]);
    slots.release(job('b', 'gpu'), 5);
    expect(slots.resourcesUsed()!.gpus).toEqual([]);
  });
});
