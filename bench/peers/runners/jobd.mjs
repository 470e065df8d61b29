/**
 * jobd: the built library (dist/, what `npm run bench:peers` has just built). JobdClient enqueues;
 * startDaemon runs the built-in `noop` job type in the mode the system asks for, with its settings
 * validated as jobd validates a settings file. The database is the harness's bin/jobd-embedded.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { serve, runParams } from './protocol.mjs';

const p = runParams();
const dist = (file) => import(pathToFileURL(join(p.root, 'dist', file)).href);
const { startDaemon, JobdClient, applyHeapGrowth } = await dist('index.js');
// Settings resolution is not part of the public API; the daemon is, and takes its result.
const { loadConfig } = await dist('config/load.js');

let dir;
let client;
let daemon;
let config;

await serve({
  async setup() {
    dir = mkdtempSync(join(tmpdir(), 'jobd-peers-run-'));
    const settings = join(dir, 'settings.json');
    writeFileSync(
      settings,
      JSON.stringify({
        mongoUri: p.url,
        database: p.database,
        dataDir: dir,
        logLevel: 'silent',
        worker: { concurrency: p.concurrency },
        jobTypes: { noop: { mode: p.options.mode ?? 'pooled' } },
      }),
    );
    config = loadConfig({ settingsPath: settings, env: {}, cwd: dir });
    // The heap policy bin/jobd applies (worker.heapGrowthPercent); a build without it has none.
    applyHeapGrowth?.(config.worker.heapGrowthPercent);
    client = await JobdClient.connect({
      mongoUri: p.url,
      database: p.database,
      appName: 'jobd-peers producer',
    });
  },
  async enqueue(n) {
    await client.enqueueMany(Array.from({ length: n }, () => ({ type: 'noop' })));
  },
  async start(count, fail) {
    daemon = await startDaemon({ config });
    // Attached in the same tick as the stats read: nothing is counted twice or missed.
    daemon.on('job:completed', () => count());
    daemon.on('job:failed', (e) => fail(`${e.jobId}: ${e.error?.message ?? 'failed'}`));
    daemon.on('job:retrying', (e) => fail(`${e.jobId}: ${e.error?.message ?? 'retrying'}`));
    count(daemon.stats().completed);
  },
  async confirm() {
    return (await client.countByState({ type: 'noop' })).completed === p.jobs;
  },
  async close() {
    await daemon?.stop({ graceMs: 0 });
    await client?.store.db.dropDatabase();
    await client?.close();
    rmSync(dir, { recursive: true, force: true });
  },
});
