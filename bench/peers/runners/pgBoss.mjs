/**
 * pg-boss on the harness's PostgreSQL: in-process batch handlers (options.batchSize jobs per call),
 * options.localConcurrency workers polling, each fetching again at once while batches come back
 * full (burstWhenBatchFull). pg-boss completes a batch when its handler returns.
 */
import pg from 'pg';
import { PgBoss } from 'pg-boss';
import { serve, runParams } from './protocol.mjs';
import { createDatabase, dropDatabase, scalar } from './postgres.mjs';

const p = runParams();
const queue = 'noop';

let boss;
let pool;

await serve({
  async setup() {
    const url = await createDatabase(p.url, p.database);
    pool = new pg.Pool({ connectionString: url, max: 1 });
    boss = new PgBoss({ connectionString: url });
    boss.on('error', (err) => process.stderr.write(`pg-boss error: ${err?.message ?? err}\n`));
    await boss.start();
    await boss.createQueue(queue);
  },
  async enqueue(n) {
    await boss.insert(
      queue,
      Array.from({ length: n }, () => ({ data: {} })),
    );
  },
  async start(count) {
    await boss.work(
      queue,
      {
        batchSize: p.options.batchSize,
        localConcurrency: p.options.localConcurrency,
        burstWhenBatchFull: true,
      },
      async (jobs) => {
        count(jobs.length);
      },
    );
  },
  async confirm() {
    const done = await scalar(
      pool,
      `SELECT count(*)::int FROM pgboss.job WHERE name = $1 AND state = 'completed'`,
      [queue],
    );
    return done === p.jobs;
  },
  async close() {
    await boss?.stop({ graceful: true, wait: true });
    await pool?.end();
    await dropDatabase(p.url, p.database);
  },
});
