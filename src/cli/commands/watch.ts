/**
 * `jobctl watch`: a live view of jobs with progress bars, rates and ETA. It redraws when a change
 * stream reports a change to jobs (and every second in any case, so it works without change streams).
 * On a terminal it redraws in place; otherwise it prints one plain line per change of a job's state
 * or progress. Ctrl-C (SIGINT) or SIGTERM ends it cleanly with exit code 0.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { list, watchJobs, type Store, type Watcher } from '../../store/index.js';
import { JOB_STATES, type JobDoc, type JobState } from '../../types.js';
import { intOption } from '../common.js';
import {
  commandContext,
  withCommonOptions,
  withConnection,
  type CommonOptions,
  type RegisterCommand,
} from '../context.js';
import { toJson } from '../output.js';
import { bar, formatEta, RateTracker } from '../progressBar.js';

const POLL_MS = 1_000;

interface WatchOpts extends CommonOptions {
  type?: string;
  state?: JobState[];
  limit: number;
}

export function progressLine(job: JobDoc, tracker: RateTracker | undefined): string {
  const pct = job.progress?.percent ?? (job.state === 'completed' ? 100 : 0);
  const rate = tracker?.rate();
  return `${job._id} ${job.type.padEnd(18)} ${job.state.padEnd(9)} ${bar(pct)} ${
    rate ? `${rate.toFixed(2)}%/s` : '   -  '
  } ETA ${formatEta(tracker?.etaMs() ?? null)} ${job.progress?.message ?? ''}`.trimEnd();
}

async function runWatch(store: Store, opts: WatchOpts, json: boolean): Promise<void> {
  const tty = !!process.stdout.isTTY && !json;
  const trackers = new Map<string, RateTracker>();
  const lastSeen = new Map<string, string>();
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const onSignal = (): void => stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let wake: (() => void) | null = null;
  let watcher: Watcher | null = null;
  try {
    watcher = watchJobs(store, { onChange: () => wake?.(), onError: () => (watcher = null) });
  } catch {
    /* no change streams: the poll below still refreshes */
  }
  if (!tty && !json)
    process.stdout.write(
      `watching jobs${opts.type ? ` of type ${opts.type}` : ''} in states ${(opts.state ?? ['running']).join(',')} (Ctrl-C to stop)\n`,
    );
  let running = true;
  void stopped.then(() => {
    running = false;
    wake?.();
  });
  try {
    while (running) {
      const jobs = await list(store, {
        state: opts.state ?? ['running'],
        ...(opts.type !== undefined ? { type: opts.type } : {}),
        order: 'oldest',
        limit: opts.limit,
      });
      const now = Date.now();
      for (const j of jobs) {
        let t = trackers.get(j._id);
        if (!t) trackers.set(j._id, (t = new RateTracker()));
        if (j.progress) t.add(now, j.progress.percent);
      }
      if (tty) {
        const header = `jobd watch ${new Date(now).toISOString()}  ${jobs.length} job(s)${opts.type ? ` of ${opts.type}` : ''}  (Ctrl-C to stop)`;
        process.stdout.write(
          `\x1b[H\x1b[J${header}\n${jobs.map((j) => progressLine(j, trackers.get(j._id))).join('\n')}\n`,
        );
      } else {
        for (const j of jobs) {
          const key = `${j.state}:${j.progress?.percent ?? ''}:${j.progress?.message ?? ''}`;
          if (lastSeen.get(j._id) === key) continue;
          lastSeen.set(j._id, key);
          const t = trackers.get(j._id);
          process.stdout.write(
            json
              ? `${toJson({ at: new Date(now), id: j._id, type: j.type, state: j.state, progress: j.progress ?? null, ratePerSec: t?.rate() ?? null, etaMs: t?.etaMs() ?? null }).replace(/\n\s*/g, ' ')}\n`
              : `${new Date(now).toISOString()} ${progressLine(j, t)}\n`,
          );
        }
      }
      const shown = new Set(jobs.map((j) => j._id));
      for (const id of trackers.keys()) if (!shown.has(id)) trackers.delete(id);
      if (!running) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, POLL_MS);
        // Several changes in a burst make one redraw.
        wake = () => {
          clearTimeout(timer);
          wake = null;
          setTimeout(resolve, running ? 100 : 0);
        };
      });
      wake = null;
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await watcher?.close();
  }
}

export const registerWatch: RegisterCommand = (program, env) => {
  program.addCommand(
    withCommonOptions(new Command('watch'))
      .description(
        'live view of jobs with progress bars, rate and ETA (plain lines when stdout is not a terminal)',
      )
      .option('--type <type>', 'only this job type')
      .addOption(
        new Option(
          '--state <states>',
          `states to show, comma-separated (default running): ${JOB_STATES.join(', ')}`,
        ).argParser((v: string) => {
          const states = v.split(',').map((s) => s.trim());
          for (const s of states) {
            if (!(JOB_STATES as readonly string[]).includes(s))
              throw new InvalidArgumentError(`"${s}" is not a job state: use ${JOB_STATES.join(', ')}.`);
          }
          return states as JobState[];
        }),
      )
      .option('--limit <n>', 'jobs shown at most', intOption(1, 1000), 30)
      .action(async (opts: WatchOpts) => {
        const ctx = commandContext(opts, env);
        await withConnection(ctx, (conn) => runWatch(conn.store, opts, ctx.printer.json));
      }),
  );
};
