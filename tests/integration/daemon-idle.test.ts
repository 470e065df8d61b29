/**
 * While its change streams are ready, an idle daemon's timers are only a safety net: it does not
 * re-read schedules, dataset work or paused queues every poll interval (each read costs the daemon and
 * the server ~1 CPU-ms; at the old 0.5-2 s intervals an idle daemon sent ~4.5 finds a second). The
 * streams carry what other processes write: a schedule added elsewhere fires at once, a pause is seen
 * at once, with their poll settings ten minutes away. Without change streams the settings still bound
 * how late each is seen.
 */
import type { CommandStartedEvent, Document } from 'mongodb';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config/defaults.js';
import { resolveDatasets } from '../../src/config/datasets.js';
import { addSchedule, enqueue, setQueuePaused } from '../../src/store/index.js';
import { startDaemon, type Daemon } from '../../src/worker/daemon.js';
import { waitUntil } from '../helpers/waitFor.js';
import { collect, testConfig } from './daemon-helpers.js';
import { newJob, openStoreFixture, type StoreFixture } from './store-helpers.js';

type Overrides = Parameters<typeof testConfig>[1];

/**
 * Which reader sent a find: the three services whose timers this file is about, or another one (the
 * claim loop's own pollMaxMs safety net, the rescuer's passes), which is named but not judged here.
 */
function sourceOf(cmd: Document): string {
  const coll = String(cmd.find);
  if (coll === 'schedules') return 'scheduler';
  if (coll === 'queues') return 'queueGate';
  if (coll === 'jobs' && JSON.stringify(cmd.filter ?? {}).includes('datasetStatusFinal'))
    return 'datasetStatus';
  return `other:${coll}`;
}
const SERVICES = ['scheduler', 'queueGate', 'datasetStatus'];

describe('daemon: timed reads while change streams are ready', () => {
  let f: StoreFixture;
  let d: Daemon | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('idle');
  });
  afterEach(async () => {
    await d?.stop({ graceMs: 1_000 });
    d = null;
    await f.close();
  });

  /** Starts a daemon that counts its finds per collection, and returns once it ran a job. */
  async function idleDaemon(o: Overrides, statusPollMs: number) {
    const finds: { of: string; at: number }[] = [];
    d = await startDaemon({
      config: { ...testConfig(f, o), datasets: resolveDatasets({ statusPollMs }) },
      logger: pino({ level: 'silent' }),
      monitorCommands: true,
    });
    d.store.client.on('commandStarted', (e: CommandStartedEvent) => {
      if (e.commandName === 'find') finds.push({ of: sourceOf(e.command), at: performance.now() });
    });
    const job = await enqueue(f.store, newJob('echo', { n: 1 }, {}, new Date()), new Date());
    await collect(d, 'job:completed', [job.job._id]);
    /** The finds sent during the next `ms`, per collection. */
    const during = async (ms: number): Promise<Record<string, number>> => {
      const from = performance.now();
      await new Promise((r) => setTimeout(r, ms));
      const per: Record<string, number> = {};
      for (const x of finds) if (x.at >= from) per[x.of] = (per[x.of] ?? 0) + 1;
      return per;
    };
    return { daemon: d, during };
  }

  const ofServices = (per: Record<string, number>) => SERVICES.reduce((a, k) => a + (per[k] ?? 0), 0);

  it('an idle daemon at the default settings sends at most 2 finds in 4 s for schedules, paused queues and dataset work', async () => {
    const { during } = await idleDaemon(
      {
        worker: { pollMinMs: DEFAULTS.worker.pollMinMs, pollMaxMs: DEFAULTS.worker.pollMaxMs },
        maintenance: {
          // derived from leaseMs (30 s in tests) as the settings derive it
          rescueIntervalMs: 15_000,
          schedulePollMs: DEFAULTS.maintenance.schedulePollMs,
        },
      },
      resolveDatasets({}).statusPollMs,
    );
    // Start-up settles: each stream's first pass, the dataset stream narrowing and reopening.
    await during(1_000);
    const per = await during(4_000);
    // Before: ~18 (scheduler 2 a second, dataset status 2 a second, paused queues every 2 s).
    expect(ofServices(per), JSON.stringify(per)).toBeLessThanOrEqual(2);
  });

  it('short poll settings drive no reads while the streams are ready, and do without change streams', async () => {
    const short = 200;
    const o = { worker: { pollMaxMs: short }, maintenance: { schedulePollMs: short } };
    const streams = await idleDaemon(o, short);
    await streams.during(1_000);
    const quiet = await streams.during(3_000);
    for (const k of SERVICES) expect(quiet[k] ?? 0, `${k}: ${JSON.stringify(quiet)}`).toBeLessThanOrEqual(1);
    await d!.stop({ graceMs: 1_000 });

    // The same daemon without change streams reads each at its poll interval (15 in 3 s at 200 ms).
    const polled = await idleDaemon({ ...o, worker: { ...o.worker, changeStreams: false } }, short);
    const busy = await polled.during(3_000);
    for (const k of SERVICES) expect(busy[k] ?? 0, `${k}: ${JSON.stringify(busy)}`).toBeGreaterThanOrEqual(3);
  });

  it('a schedule another client adds fires at once, schedulePollMs ten minutes away', async () => {
    const { daemon } = await idleDaemon({ maintenance: { schedulePollMs: 600_000 } }, 600_000);
    expect(daemon).toBeTruthy();
    await addSchedule(
      f.store,
      'soon',
      { everyMs: 1_000, type: 'echo', params: { from: 'schedule' }, catchUp: 'skip', catchUpMax: 1 },
      new Date(),
    );
    const job = await waitUntil(
      () => f.store.jobs.findOne({ scheduleId: 'soon' }).then((j) => j ?? undefined),
      {
        what: 'the schedule fired',
        timeoutMs: 15_000,
      },
    );
    expect(job.type).toBe('echo');
  });

  it('the scheduler reopens its stream after the server ends it, and still sees a new schedule at once', async () => {
    const { daemon } = await idleDaemon({ maintenance: { schedulePollMs: 600_000 } }, 600_000);
    expect(daemon).toBeTruthy();
    const def = { everyMs: 1_000, type: 'echo', params: {}, catchUp: 'skip', catchUpMax: 1 } as const;
    await addSchedule(f.store, 'first', def, new Date());
    await waitUntil(() => f.store.jobs.findOne({ scheduleId: 'first' }).then((j) => j ?? undefined), {
      what: 'the first schedule fired',
      timeoutMs: 15_000,
    });
    // Dropping the collection invalidates the stream: the scheduler polls, reopens, and its new
    // stream's readiness (or its first change) brings the next schedule in.
    await f.store.db.collection('schedules').drop();
    await addSchedule(f.store, 'second', def, new Date());
    await waitUntil(() => f.store.jobs.findOne({ scheduleId: 'second' }).then((j) => j ?? undefined), {
      what: 'the second schedule fired',
      timeoutMs: 15_000,
    });
  });

  it('a queue another client pauses is seen at once, pollMaxMs ten minutes away', async () => {
    const tenMinutes = 600_000;
    const { daemon } = await idleDaemon(
      { worker: { pollMinMs: tenMinutes, pollMaxMs: tenMinutes } },
      tenMinutes,
    );
    const seen = daemon.events.waitFor('queues:paused', (e) => e.paused.includes('echo'), {
      timeoutMs: 15_000,
    });
    await setQueuePaused(f.store, 'echo', true, { now: new Date() });
    await seen;
  });
});
