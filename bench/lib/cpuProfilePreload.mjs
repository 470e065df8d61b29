/**
 * Loaded through NODE_OPTIONS (--import) into jobd's pooled children by `npm run bench:profile`.
 * The sandbox forks them with an execArgv of its own, and Node refuses --cpu-prof in NODE_OPTIONS,
 * so this starts the same V8 sampling profiler through the inspector and writes the same
 * .cpuprofile when the process exits (process.exit included; a SIGKILL leaves none).
 * A process started with --cpu-prof (the daemon) profiles itself and is left alone.
 */
import { Session } from 'node:inspector';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.JOBD_BENCH_CPU_PROF_DIR;
if (dir && !process.execArgv.some((a) => a.startsWith('--cpu-prof'))) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  const interval = Number(process.env.JOBD_BENCH_CPU_PROF_INTERVAL_US) || 1000;
  session.post('Profiler.setSamplingInterval', { interval });
  session.post('Profiler.start');
  // The in-thread inspector session answers synchronously, so this completes inside 'exit'.
  process.on('exit', () => {
    session.post('Profiler.stop', (err, result) => {
      if (err || !result) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `child-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
