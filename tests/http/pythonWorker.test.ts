/**
 * A real external worker: examples/python-worker/worker.py (the system python3, standard library only)
 * pulls a job from a real jobd daemon's HTTP API, reports progress, and is SIGKILLed mid-job. Its lease
 * runs out, the daemon's rescuer makes the job claimable again, a second python worker completes it,
 * and the first worker's late write (made with its token) is refused with 409.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { testDbName, testMongoUri } from '../helpers/db.js';
import { startDaemonProcess, writeDaemonSettings, type DaemonProcess } from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';

const WORKER_PY = resolve(import.meta.dirname, '../../examples/python-worker/worker.py');
const WORKER_TOKEN = 'py-worker-token-0123456789abcdef';
const QUEUE = 'squares';
/** Short enough that the test is quick, long enough that a starved heartbeat thread keeps it. */
const LEASE_MS = 4_000;

interface PyLine {
  event: string;
  [k: string]: unknown;
}

interface PyWorker {
  child: ChildProcess;
  lines: PyLine[];
  exited: Promise<number | null>;
  waitFor(event: string, timeoutMs?: number): Promise<PyLine>;
}

function startPyWorker(url: string, name: string, extra: string[] = []): PyWorker {
  const child = spawn(
    'python3',
    [
      WORKER_PY,
      '--url',
      url,
      '--queue',
      QUEUE,
      '--worker',
      name,
      '--lease-ms',
      String(LEASE_MS),
      '--wait',
      '5',
      ...extra,
    ],
    { env: { ...process.env, JOBD_TOKEN: WORKER_TOKEN }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: PyLine[] = [];
  let stderr = '';
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l) as PyLine);
    } catch {
      stderr += `${l}\n`;
    }
    for (const w of waiters) w();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    lines,
    exited,
    waitFor(event, timeoutMs = 60_000) {
      return new Promise<PyLine>((res, rej) => {
        const check = () => {
          const hit = lines.find((l) => l.event === event);
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(t);
          res(hit);
        };
        const t = setTimeout(() => {
          waiters.delete(check);
          rej(
            new Error(
              `python worker ${name}: no "${event}" within ${timeoutMs} ms; lines ${JSON.stringify(lines)}; stderr ${stderr}`,
            ),
          );
        }, timeoutMs);
        waiters.add(check);
        check();
        void exited.then(() => setImmediate(check));
      });
    },
  };
}

let daemon: DaemonProcess;
let client: JobdClient;
let url = '';
const workers: PyWorker[] = [];

beforeAll(async () => {
  const database = testDbName('py_worker');
  const settings = writeDaemonSettings({
    mongoUri: testMongoUri(),
    database,
    // The daemon's own lease is long (it runs nothing here); the rescuer looks often.
    worker: { leaseMs: 30_000 },
    maintenance: { rescueIntervalMs: 250 },
    extra: {
      http: { host: '127.0.0.1', port: 0, tokens: [{ token: WORKER_TOKEN, role: 'worker' }] },
    },
  });
  daemon = await startDaemonProcess(settings);
  url = String((await daemon.waitForLog('http api listening', { timeoutMs: 60_000 })).url);
  client = await JobdClient.connect({ mongoUri: testMongoUri(), database });
}, 150_000);

afterAll(async () => {
  for (const w of workers) w.child.kill('SIGKILL');
  await daemon?.stop();
  await client?.store.db.dropDatabase().catch(() => {});
  await client?.close();
});

it('a SIGKILLed python worker loses its job to the rescuer; a second one completes it; the late write is refused', async () => {
  const { job } = await client.enqueue(QUEUE, { n: 7, steps: 8, stepMs: 250 });
  const first = startPyWorker(url, 'py-a');
  workers.push(first);
  const claimed = await first.waitFor('claimed');
  expect(claimed.jobId).toBe(job._id);
  await first.waitFor('progress');
  expect((await client.get(job._id))!.progress?.percent).toBeGreaterThan(0);
  first.child.kill('SIGKILL');
  await first.exited;

  // The lease runs out; the daemon's rescuer moves the job on (retrying, then due again).
  const rescued = await waitUntil(
    async () => {
      const j = await client.get(job._id);
      return j && j.state !== 'running' ? j : undefined;
    },
    { timeoutMs: 90_000, what: `job ${job._id} rescued` },
  );
  expect(rescued.state).toBe('retrying');
  expect(rescued.lastError).toMatchObject({ code: 'JOBD_LEASE_EXPIRED', worker: 'ext:py-a' });

  const second = startPyWorker(url, 'py-b', ['--max-jobs', '1']);
  workers.push(second);
  const done = await second.waitFor('completed', 90_000);
  expect(done).toMatchObject({ jobId: job._id, result: { square: 49 } });
  expect(await second.exited).toBe(0);
  const final = await client.get(job._id);
  expect(final).toMatchObject({ state: 'completed', attempts: 2, result: { square: 49 } });
  expect(final!.logTail).toContain('step 8 of 8');

  // The first worker's token, used late: refused, and nothing changes.
  const late = await fetch(`${url}/api/jobs/${job._id}/complete`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WORKER_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ token: claimed.token, result: { square: -1 } }),
  });
  expect(late.status).toBe(409);
  expect(late.headers.get('content-type')).toContain('application/problem+json');
  expect(((await late.json()) as { detail: string }).detail).toContain(
    `job ${job._id} is no longer held by this lease`,
  );
  expect((await client.get(job._id))!.result).toEqual({ square: 49 });

  const history = (await client.events(job._id)).map((e) => `${e.from}>${e.to}:${e.worker ?? ''}`);
  expect(history).toEqual([
    'null>queued:',
    'queued>running:ext:py-a',
    expect.stringMatching(/^running>retrying:/),
    'retrying>running:ext:py-b',
    'running>completed:ext:py-b',
  ]);
  const registry = await client.store.workers.find({ external: true }, { sort: { _id: 1 } }).toArray();
  expect(registry.map((w) => w._id)).toEqual(['ext:py-a', 'ext:py-b']);
}, 240_000);
