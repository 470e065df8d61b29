/**
 * Workflow phases: a fan-out/fan-in workflow end to end beside the same number of independent no-op
 * jobs (same daemon settings, same run), and release latency (last dependency completed → dependent
 * started) with change streams.
 */
import pino from 'pino';
import { completions, configFor, enqueueNoops, openProducer, type Ctx } from './phases.js';
import { round, sleep, summary } from './stats.js';

const silent = pino({ level: 'silent' });
const JOB_DEFAULTS = { priority: 5, maxAttempts: 3, timeoutMs: 60_000 };

export interface FanFigures {
  jobs: number;
  completed: number;
  capped: boolean;
  seconds: number;
  jobsPerSec: number;
}

async function timed(
  ctx: Ctx,
  label: string,
  o: { jobs: number; concurrency: number },
  submit: (ctx: Ctx, producer: Awaited<ReturnType<typeof openProducer>>) => Promise<void>,
): Promise<FanFigures> {
  const db = ctx.newDb(label);
  const config = configFor(ctx, db, { concurrency: o.concurrency });
  const producer = await openProducer(ctx, db);
  const d = await ctx.jobd.startDaemon({ config, logger: silent });
  try {
    const warm = completions(d, o.concurrency * 2, ctx.phaseMaxMs);
    await enqueueNoops(ctx, producer, 'noop', o.concurrency * 2);
    await warm;
    const t0 = performance.now();
    const done = completions(d, o.jobs, ctx.phaseMaxMs);
    await submit(ctx, producer);
    const r = await done;
    const seconds = (r.at - t0) / 1000;
    return {
      jobs: o.jobs,
      completed: r.done,
      capped: r.done < o.jobs,
      seconds: round(seconds),
      jobsPerSec: round(r.done / seconds, 1),
    };
  } finally {
    await d.stop({ graceMs: 0 });
    await producer.db.dropDatabase().catch(() => {});
    await producer.close();
  }
}

/** `jobs` independent no-op jobs, then a workflow of as many: one root, jobs-2 in parallel, one sink. */
export async function fanOutFanIn(
  ctx: Ctx,
  o: { jobs: number; concurrency: number },
): Promise<{ independent: FanFigures; workflow: FanFigures; ratio: number }> {
  const independent = await timed(ctx, 'fan_indep', o, async (c, producer) => {
    await enqueueNoops(c, producer, 'noop', o.jobs);
  });
  const workflow = await timed(ctx, 'fan_wf', o, async (c, producer) => {
    const now = new Date();
    const job = () => c.jobd.store.resolveNewJob('noop', null, {}, JOB_DEFAULTS, now);
    const middle = Array.from({ length: o.jobs - 2 }, (_, i) => `m${i}`);
    await c.jobd.store.submitWorkflowJobs(
      producer,
      {
        name: 'fan-out/fan-in',
        jobs: [
          { key: 'root', dependsOn: [], job: job() },
          ...middle.map((key) => ({ key, dependsOn: ['root'], job: job() })),
          { key: 'sink', dependsOn: middle, job: job() },
        ],
      },
      now,
    );
  });
  return { independent, workflow, ratio: round(workflow.jobsPerSec / independent.jobsPerSec, 3) };
}

export interface ReleaseLatencyFigures {
  samples: number;
  changeStreams: boolean;
  /** performance.now() at the dependent's 'job:claimed' minus at its dependency's 'job:completed'. */
  eventMs: ReturnType<typeof summary>;
  /** dependent.startedAt - dependency.finishedAt from the job documents (ms resolution). */
  docMs: ReturnType<typeof summary>;
}

/** A dependency (sleep 20 ms) and its dependent, one pair at a time on an idle daemon. */
export async function releaseLatency(ctx: Ctx, o: { samples: number }): Promise<ReleaseLatencyFigures> {
  const db = ctx.newDb('release_lat');
  const config = configFor(ctx, db, { concurrency: 4, changeStreams: true });
  const producer = await openProducer(ctx, db);
  const d = await ctx.jobd.startDaemon({ config, logger: silent });
  const { store } = ctx.jobd;
  const eventMs: number[] = [];
  const docMs: number[] = [];
  try {
    await sleep(500);
    for (let i = 0; i < o.samples + 5; i++) {
      const now = new Date();
      const { job: dep } = await store.enqueue(
        producer,
        store.resolveNewJob('sleep', { ms: 20 }, {}, JOB_DEFAULTS, now),
        now,
      );
      const completedAt = d.events
        .waitFor('job:completed', (e) => e.jobId === dep._id)
        .then(() => performance.now());
      const { job } = await store.enqueue(
        producer,
        store.resolveNewJob('noop', null, { dependsOn: [dep._id] }, JOB_DEFAULTS, new Date()),
        new Date(),
      );
      if (job.state !== 'waiting') continue; // the dependency finished first: no release to time
      const claimedAt = d.events
        .waitFor('job:claimed', (e) => e.jobId === job._id)
        .then(() => performance.now());
      const [c, s] = await Promise.all([completedAt, claimedAt]);
      await d.events.waitFor('job:completed', (e) => e.jobId === job._id);
      if (i < 5) continue;
      eventMs.push(s - c);
      const [a, b] = await Promise.all([store.get(producer, dep._id), store.get(producer, job._id)]);
      docMs.push(b!.startedAt!.getTime() - a!.finishedAt!.getTime());
      await sleep(20);
    }
  } finally {
    await d.stop({ graceMs: 0 });
    await producer.db.dropDatabase().catch(() => {});
    await producer.close();
  }
  return { samples: eventMs.length, changeStreams: true, eventMs: summary(eventMs), docMs: summary(docMs) };
}
