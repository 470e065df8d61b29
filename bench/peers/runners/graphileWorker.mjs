/**
 * graphile-worker on the harness's PostgreSQL: in-process tasks, `concurrency` at a time, a pool of
 * as many connections (graphile-worker warns when its pool is smaller than its concurrency).
 * A completed job is deleted from its table.
 */
import { EventEmitter } from 'node:events';
import pg from 'pg';
import { Logger, makeWorkerUtils, run } from 'graphile-worker';
import { serve, runParams } from './protocol.mjs';
import { createDatabase, dropDatabase, scalar } from './postgres.mjs';

const p = runParams();
const silent = new Logger(() => () => {});

let url;
let utils;
let runner;
let pool;

await serve({
  async setup() {
    url = await createDatabase(p.url, p.database);
    pool = new pg.Pool({ connectionString: url, max: 1 });
    utils = await makeWorkerUtils({ connectionString: url, logger: silent });
    await utils.migrate();
  },
  async enqueue(n) {
    await utils.addJobs(Array.from({ length: n }, () => ({ identifier: 'noop', payload: {} })));
  },
  async start(count, fail) {
    // Listeners go on before run() so no job finishes unseen.
    const events = new EventEmitter();
    events.on('job:success', () => count());
    events.on('job:error', ({ error }) => fail(error?.message ?? error));
    runner = await run({
      connectionString: url,
      concurrency: p.concurrency,
      maxPoolSize: p.options.maxPoolSize ?? p.concurrency,
      noHandleSignals: true,
      logger: silent,
      events,
      taskList: { noop: async () => {} },
    });
  },
  async confirm() {
    return (await scalar(pool, 'SELECT count(*)::int FROM graphile_worker._private_jobs')) === 0;
  },
  async close() {
    await runner?.stop();
    await utils?.release();
    await pool?.end();
    await dropDatabase(p.url, p.database);
  },
});
