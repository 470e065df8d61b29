/**
 * One timer per daemon renews the leases of all its jobs in one updateMany (the daemon's timer, not
 * the child's, so a CPU-bound handler never looks dead), then beats the worker registry.
 */
import { heartbeatLeases, heartbeatWorker, type HeldLease, type Store } from '../store/index.js';
import type { Clock } from '../clock.js';
import { Periodic } from '../periodic.js';
import type { JobId, ResourceAllocation, WorkerDoc } from '../types.js';
import type { DbHealth } from './dbHealth.js';

export interface LeaseKeeperOptions {
  workerId: string;
  intervalMs: number;
  leaseMs: number;
  clock: Clock;
  health: DbHealth;
  /** Leases this daemon holds right now (running and not yet settled). */
  held(): HeldLease[];
  /** The database says these leases are gone (each with its token). */
  onLost(leases: HeldLease[]): void;
  workerState(): { running: JobId[]; state: WorkerDoc['state']; resourcesUsed?: ResourceAllocation };
}

export class LeaseKeeper {
  private readonly loop: Periodic;

  constructor(
    private readonly store: Store,
    private readonly o: LeaseKeeperOptions,
  ) {
    // tick() reports database errors itself; anything else it throws is reported the same way.
    this.loop = new Periodic(
      o.intervalMs,
      () => this.tick(),
      (err) => this.o.health.error('heartbeat', err),
    );
  }

  start(): void {
    this.loop.start();
  }

  private async tick(): Promise<void> {
    const leases = this.o.held();
    if (leases.length > 0) {
      try {
        const res = await heartbeatLeases(this.store, {
          leases,
          leaseMs: this.o.leaseMs,
          now: this.o.clock.now(),
        });
        this.o.health.ok('heartbeat');
        if (res.lostLeases.length > 0) this.o.onLost(res.lostLeases);
      } catch (err) {
        this.o.health.error('heartbeat', err);
      }
    }
    try {
      const w = this.o.workerState();
      await heartbeatWorker(this.store, this.o.workerId, { now: this.o.clock.now(), ...w });
      this.o.health.ok('worker-heartbeat');
    } catch (err) {
      this.o.health.error('worker-heartbeat', err);
    }
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }
}
