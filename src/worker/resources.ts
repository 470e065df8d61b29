/**
 * The daemon's resource ledger: its capacity (settings `resources`: CPUs, memory, GPU ids) and what the
 * jobs it holds took of it. A job whose type declares needs takes them when it is claimed (so jobs
 * claimed ahead of a slot count too) and gives them back when its attempt ends, however it ends.
 * Types without needs never touch the ledger.
 */
import type { ResourceAllocation, ResourceCapacity, ResourceNeeds } from '../types.js';

/** The needs of a type that asks for anything; undefined for a type that needs nothing. */
export function needsOf(needs: ResourceNeeds | undefined): Required<ResourceNeeds> | undefined {
  if (!needs) return undefined;
  const n = { cpus: needs.cpus ?? 0, memoryMb: needs.memoryMb ?? 0, gpus: needs.gpus ?? 0 };
  return n.cpus > 0 || n.memoryMb > 0 || n.gpus > 0 ? n : undefined;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** Why `needs` can never fit `capacity` (one line), or null when it can. */
export function whyNeverFits(needs: ResourceNeeds | undefined, capacity: ResourceCapacity): string | null {
  const n = needsOf(needs);
  if (!n) return null;
  const short: string[] = [];
  if (n.gpus > capacity.gpus.length) {
    short.push(`${plural(n.gpus, 'GPU')} (resources.gpus has ${capacity.gpus.length})`);
  }
  if (n.memoryMb > capacity.memoryMb) {
    short.push(`${n.memoryMb} MiB of memory (resources.memoryMb is ${capacity.memoryMb})`);
  }
  if (n.cpus > capacity.cpus) short.push(`${plural(n.cpus, 'CPU')} (resources.cpus is ${capacity.cpus})`);
  return short.length ? `needs ${short.join(', ')}` : null;
}

/** Whether `needs` fit what a daemon advertised as free (its capacity minus its use). */
export function fitsAdvertised(
  needs: ResourceNeeds | undefined,
  r: ResourceCapacity & { used: ResourceAllocation },
): boolean {
  const n = needsOf(needs);
  if (!n) return true;
  return fitsIn(n, {
    cpus: r.cpus - r.used.cpus,
    memoryMb: r.memoryMb - r.used.memoryMb,
    gpus: r.gpus.length - r.used.gpus.length,
  });
}

/** "cpus 2/16, memory 8000/64000 MiB, gpus 1/2 [0]": in use / capacity, and the GPU ids in use. */
export function resourcesText(r: ResourceCapacity & { used: ResourceAllocation }): string {
  const gpus =
    r.gpus.length === 0 ? 'none' : `${r.used.gpus.length}/${r.gpus.length} [${r.used.gpus.join(',')}]`;
  return `cpus ${r.used.cpus}/${r.cpus}, memory ${r.used.memoryMb}/${r.memoryMb} MiB, gpus ${gpus}`;
}

interface Free {
  cpus: number;
  memoryMb: number;
  gpus: number;
}

function fitsIn(n: Required<ResourceNeeds>, free: Free): boolean {
  return n.cpus <= free.cpus && n.memoryMb <= free.memoryMb && n.gpus <= free.gpus;
}

export class ResourceLedger {
  private cpus = 0;
  private memoryMb = 0;
  /** GPU ids not given to a job, lowest first. */
  private freeGpus: number[];

  constructor(readonly capacity: ResourceCapacity) {
    this.freeGpus = [...capacity.gpus].sort((a, b) => a - b);
  }

  private free(): Free {
    return {
      cpus: this.capacity.cpus - this.cpus,
      memoryMb: this.capacity.memoryMb - this.memoryMb,
      gpus: this.freeGpus.length,
    };
  }

  /** The free capacity covers `needs` now. */
  fits(needs: ResourceNeeds | undefined): boolean {
    const n = needsOf(needs);
    return !n || fitsIn(n, this.free());
  }

  /**
   * A claim's admission test: each candidate admitted takes its needs from a copy of the free
   * capacity, so one batch never claims more than fits.
   */
  trial(): (needs: ResourceNeeds | undefined) => boolean {
    const left = this.free();
    return (needs) => {
      const n = needsOf(needs);
      if (!n) return true;
      if (!fitsIn(n, left)) return false;
      left.cpus -= n.cpus;
      left.memoryMb -= n.memoryMb;
      left.gpus -= n.gpus;
      return true;
    };
  }

  /** Take `needs` (the lowest free GPU ids); null when they do not fit now. */
  take(needs: ResourceNeeds | undefined): ResourceAllocation | null {
    const n = needsOf(needs);
    if (!n) return { cpus: 0, memoryMb: 0, gpus: [] };
    if (!fitsIn(n, this.free())) return null;
    this.cpus += n.cpus;
    this.memoryMb += n.memoryMb;
    const gpus = this.freeGpus.splice(0, n.gpus);
    return { cpus: n.cpus, memoryMb: n.memoryMb, gpus };
  }

  give(a: ResourceAllocation): void {
    this.cpus -= a.cpus;
    this.memoryMb -= a.memoryMb;
    if (a.gpus.length) this.freeGpus = [...this.freeGpus, ...a.gpus].sort((x, y) => x - y);
  }

  /** What the jobs hold now. */
  used(): ResourceAllocation {
    const free = new Set(this.freeGpus);
    return {
      cpus: this.cpus,
      memoryMb: this.memoryMb,
      gpus: this.capacity.gpus.filter((g) => !free.has(g)).sort((a, b) => a - b),
    };
  }
}
