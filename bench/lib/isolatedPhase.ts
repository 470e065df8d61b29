/**
 * The isolated phase at one concurrency: bare `node -e 0` spawns (the reference), isolated jobs of
 * bench/fixtures/plainNoop.js (a handler that imports nothing: isolated mode's own cost, judged) and of
 * the typed built-in noop (it loads zod in every child), in `rounds` interleaved blocks of
 * `jobs / rounds` each. Each round runs the three kinds in another order, so a change of load during
 * the phase (this machine's neighbours come and go within a minute) falls on all three alike instead
 * of on whichever ran at that moment. Each jobd block is `throughput()` as the other phases run it: a
 * fresh daemon, warmed up with `concurrency × 2` jobs, stopped after it, so the bare spawns never run
 * beside a daemon. Rates are total jobs over total seconds of each kind's blocks; CPU is per job over
 * all of a kind's blocks.
 */
import { PRESTART, SPAWN_HELPER, throughput, type Ctx, type ThroughputFigures } from './phases.js';
import { spawnRate, type SpawnFigures } from './spawnRate.js';
import { round } from './stats.js';

type Kind = 'bare' | 'plain' | 'typed';
const KINDS: Kind[] = ['bare', 'plain', 'typed'];

/** Round r's order: the kinds rotated by r, reversed on odd rounds (every kind meets every slot). */
export function roundOrder(r: number): Kind[] {
  const rotated = [...KINDS.slice(r % 3), ...KINDS.slice(0, r % 3)];
  return r % 2 ? rotated.reverse() : rotated;
}

interface Tally {
  jobs: number;
  seconds: number;
  cpu: { self: number; selfMain: number; children: number; server: number } | null;
  commands: number;
  capped: boolean;
}

const emptyTally = (): Tally => ({
  jobs: 0,
  seconds: 0,
  cpu: { self: 0, selfMain: 0, children: 0, server: 0 },
  commands: 0,
  capped: false,
});

function addBare(t: Tally, n: number, s: SpawnFigures): number {
  const seconds = n / s.perSec;
  t.jobs += n;
  t.seconds += seconds;
  if (t.cpu && s.cpuMs) {
    t.cpu.self += s.cpuMs.self * n;
    t.cpu.selfMain += s.cpuMs.selfMain * n;
    t.cpu.children += s.cpuMs.children * n;
  } else t.cpu = null;
  return s.perSec;
}

function addJobs(t: Tally, f: ThroughputFigures): number {
  const n = f.completed;
  t.jobs += n;
  t.seconds += f.seconds;
  t.commands += f.commandsPerJob * n;
  t.capped ||= f.capped;
  const c = f.cpuMsPerJob;
  if (t.cpu && c) {
    t.cpu.self += c.self * n;
    t.cpu.selfMain += c.selfMain * n;
    t.cpu.children += c.children * n;
    t.cpu.server += (c.server ?? 0) * n;
  } else t.cpu = null;
  return f.seconds > 0 ? n / f.seconds : 0;
}

const rate = (t: Tally): number => (t.seconds > 0 ? t.jobs / t.seconds : 0);

function cpuPerJob(t: Tally, server: boolean): Record<string, number> | null {
  if (!t.cpu || t.jobs === 0) return null;
  const per = (v: number): number => round(v / t.jobs, 2);
  return {
    self: per(t.cpu.self),
    selfMain: per(t.cpu.selfMain),
    children: per(t.cpu.children),
    ...(server ? { server: per(t.cpu.server) } : {}),
  };
}

export async function isolatedInterleaved(
  ctx: Ctx,
  o: { jobs: number; concurrency: number; rounds: number },
): Promise<Record<string, unknown>> {
  const rounds = Math.max(1, o.rounds);
  const per = Math.max(o.concurrency, Math.round(o.jobs / rounds));
  const tally: Record<Kind, Tally> = { bare: emptyTally(), plain: emptyTally(), typed: emptyTally() };
  const byRound: Array<Record<Kind, number>> = [];
  for (let r = 0; r < rounds; r++) {
    const rates = { bare: 0, plain: 0, typed: 0 };
    for (const kind of roundOrder(r)) {
      if (kind === 'bare') rates.bare = addBare(tally.bare, per, await spawnRate(per, o.concurrency));
      else {
        const type = kind === 'plain' ? 'plain-isolated' : 'noop-isolated';
        rates[kind] = addJobs(
          tally[kind],
          await throughput(ctx, { type, jobs: per, concurrency: o.concurrency }),
        );
      }
    }
    byRound.push(rates);
  }
  const bare = rate(tally.bare);
  const server = ctx.serverPid !== undefined;
  const bareCpu = cpuPerJob(tally.bare, false);
  return {
    concurrency: o.concurrency,
    jobs: tally.plain.jobs,
    completed: tally.plain.jobs,
    capped: tally.plain.capped || tally.typed.capped,
    rounds,
    jobsPerBlock: per,
    // worker.prestartIsolated as set for this run (JOBD_WORKER__PRESTART_ISOLATED), else the build's default.
    prestartIsolated: PRESTART ?? 'default',
    // worker.spawnHelper likewise (JOBD_WORKER__SPAWN_HELPER).
    spawnHelper: SPAWN_HELPER ?? 'default',
    bareSpawnPerSec: round(bare, 1),
    // CPU per bare spawn: the spawning process (self) and `node -e 0` itself (children).
    bareSpawnCpuMs: bareCpu,
    jobsPerSec: round(rate(tally.plain), 1),
    ratio: round(rate(tally.plain) / bare, 3),
    // Each round's own rates (jobs/s), in the order the round ran them, and its plain ratio.
    byRound: byRound.map((x, r) => ({
      order: roundOrder(r),
      bare: round(x.bare, 1),
      plain: round(x.plain, 1),
      typed: round(x.typed, 1),
      ratio: round(x.plain / x.bare, 3),
    })),
    commandsPerJob: round(tally.plain.commands / Math.max(1, tally.plain.jobs), 3),
    // CPU per isolated job: this process (daemon, and the server unless BENCH_DB=process puts it in
    // a process of its own: then `server`) and the child.
    cpuMsPerJob: cpuPerJob(tally.plain, server),
    typedNoop: {
      completed: tally.typed.jobs,
      jobsPerSec: round(rate(tally.typed), 1),
      ratio: round(rate(tally.typed) / bare, 3),
      commandsPerJob: round(tally.typed.commands / Math.max(1, tally.typed.jobs), 3),
      cpuMsPerJob: cpuPerJob(tally.typed, server),
    },
  };
}
