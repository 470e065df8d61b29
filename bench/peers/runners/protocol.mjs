/**
 * The runner side of the peers benchmark: every queue system's runner does the same steps, in this
 * order, so every system is timed by the same definition.
 *
 *   1. setup(): connect and create this run's empty database / queue (not timed);
 *   2. enqueue all jobs, in chunks of `chunk` (timed on its own, reported as enqueueSeconds);
 *   3. tell the harness 'ready' and wait for 'go' (the harness takes its CPU snapshot between);
 *   4. t0; start the worker; count the completions the system reports; once all are counted,
 *      poll confirm() until the store holds every job as completed; t1. seconds = t1 - t0;
 *   5. tell the harness 'done', wait for 'stop' (its second CPU snapshot), then close() and exit.
 *
 * The runners are plain JavaScript: they run on two Node versions (jobd on the project's, the peers
 * that need it on the Node 22 that bench/peers installs) with no loader, and their dependencies are
 * not part of the project's install.
 */
import { performance } from 'node:perf_hooks';

/** What the harness asks of this run (JSON in PEERS_RUN). */
export function runParams() {
  return JSON.parse(process.env.PEERS_RUN ?? '{}');
}

function send(message) {
  return new Promise((resolve) => process.send(message, () => resolve()));
}

function next(type) {
  return new Promise((resolve) => {
    const on = (m) => {
      if (m && m.t === type) {
        process.off('message', on);
        resolve(m);
      }
    };
    process.on('message', on);
  });
}

function sleep(ms) {
  let timer;
  const promise = new Promise((resolve) => (timer = setTimeout(resolve, ms)));
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Run one benchmark run for `system`:
 *   setup(p), enqueue(n), start(count, fail), confirm() → boolean, close().
 * start() calls count(n = 1) per completion it is told of, and fail(reason) if a job fails.
 */
export async function serve(system) {
  const p = runParams();
  // The harness is gone (Ctrl-C, crash): nobody will say 'stop'.
  process.on('disconnect', () => process.exit(1));
  try {
    await system.setup(p);
    const e0 = performance.now();
    for (let i = 0; i < p.jobs; i += p.chunk) await system.enqueue(Math.min(p.chunk, p.jobs - i));
    const enqueueSeconds = (performance.now() - e0) / 1000;
    const go = next('go');
    await send({ t: 'ready', enqueueSeconds });
    await go;

    let completed = 0;
    let failure = null;
    let settle;
    const all = new Promise((resolve) => (settle = resolve));
    const count = (n = 1) => {
      completed += n;
      if (completed >= p.jobs) settle();
    };
    const fail = (reason) => {
      failure ??= String(reason);
      settle();
    };
    const t0 = performance.now();
    const deadline = t0 + p.maxSeconds * 1000;
    await system.start(count, fail);
    const cap = sleep(p.maxSeconds * 1000);
    await Promise.race([all, cap.promise]);
    cap.cancel();
    if (failure) throw new Error(`a job failed: ${failure}`);
    let confirmed = false;
    if (completed >= p.jobs) {
      while (!(confirmed = await system.confirm()) && performance.now() < deadline) await sleep(5).promise;
    }
    const seconds = (performance.now() - t0) / 1000;

    const stop = next('stop');
    await send({ t: 'done', seconds, completed: Math.min(completed, p.jobs), confirmed });
    await stop;
    await system.close();
    process.exit(0);
  } catch (err) {
    await send({ t: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  }
}
