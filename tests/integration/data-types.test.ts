/**
 * The dataset job types through real daemon processes: settings → child → core → result or error on
 * the job document, cancel and rescue. Real rsync, rclone, tar and zstd; an rclone webdav remote and a
 * password-protected rsync daemon on loopback; a converter script that holds until a gate file goes.
 * The cores' own behaviour (hostile archives, option allow-lists, ...) is tested in tests/data.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { loadSettings } from '../../src/config/settings.js';
import { ValidationError } from '../../src/errors.js';
import type { JobDoc, JobId } from '../../src/types.js';
import { openTestDb, type TestDb } from '../helpers/db.js';
import {
  JOBCTL_BIN,
  killAllDaemons,
  runCli,
  startDaemonProcess,
  writeDaemonSettings,
  type DaemonProcess,
  type DaemonSettings,
} from '../helpers/daemonProcess.js';
import { waitUntil } from '../helpers/waitFor.js';
import { allGone, freePort } from '../data/helpers.js';
import { PASSWORD, startRcloneServer, unreachableConfig, type RcloneServer } from '../data/rcloneServe.js';
import { startRsyncDaemon, type RsyncDaemon } from '../data/rsyncDaemon.js';

const RSYNC_PASSWORD = 'Rs9-daemon-Secret-4t';
const USER_EMAIL = 'alice@example.org';

/** Holds while the `gate` parameter's file exists, then copies its input into its output. */
const CONVERTER = `import { cpSync, existsSync, writeFileSync } from 'node:fs';
const [input, output, sensor, params] = process.argv.slice(2);
const p = Object.fromEntries(params.split(',').filter(Boolean).map((kv) => kv.split('=')));
console.log('converting 10%');
const finish = () => {
  cpSync(input, output, { recursive: true });
  writeFileSync(output + '/args.json', JSON.stringify({ sensor, params }));
  console.log('converting 100%');
};
if (p.gate) {
  const t = setInterval(() => {
    if (!existsSync(p.gate)) { clearInterval(t); finish(); }
  }, 50);
} else finish();
`;

/**
 * Live processes below `root` (a daemon) whose command line `match`es: the tools its jobs started,
 * told apart from anything else on the machine.
 */
async function toolPids(root: number, match: (argv: string[]) => boolean): Promise<number[]> {
  const procs = new Map<number, { ppid: number; state: string; argv: string[] }>();
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces: the fields start after the last ')'.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      procs.set(Number(name), { ppid: Number(ppid), state: state!, argv });
    } catch {
      // gone meanwhile
    }
  }
  const below = (pid: number): boolean => {
    for (let p = procs.get(pid)?.ppid; p !== undefined && p > 1; p = procs.get(p)?.ppid)
      if (p === root) return true;
    return false;
  };
  return [...procs].filter(([pid, p]) => p.state !== 'Z' && below(pid) && match(p.argv)).map(([pid]) => pid);
}

const argMatch = (needle: string) => {
  const exact = needle.startsWith('=') ? needle.slice(1) : null;
  return (argv: string[]) => argv.some((a) => (exact !== null ? a === exact : a.includes(needle)));
};

/** The processes below `root`, found through /proc's children lists: quick enough to poll tightly. */
async function descendants(root: number): Promise<number[]> {
  const out: number[] = [];
  const visit = async (pid: number): Promise<void> => {
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
    const lists = await Promise.all(
      tasks.map((t) => readFile(`/proc/${pid}/task/${t}/children`, 'utf8').catch(() => '')),
    );
    const kids = lists.join(' ').split(/\s+/).filter(Boolean).map(Number);
    out.push(...kids);
    await Promise.all(kids.map(visit));
  };
  await visit(root);
  return out;
}

/** A process's group and whether SIGTERM is pending on it (null: gone). */
async function procSignals(pid: number): Promise<{ pgid: number; termPending: boolean } | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z') return null;
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const pending = [...status.matchAll(/^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$/gm)].map((m) =>
      BigInt(`0x${m[1]}`),
    );
    const SIGTERM_BIT = 1n << 14n;
    return { pgid: Number(fields[2]), termPending: pending.some((p) => (p & SIGTERM_BIT) !== 0n) };
  } catch {
    return null;
  }
}

/**
 * Freezes (SIGSTOP) the process group of each tool below `root` the moment it shows, until `enough`
 * holds for the frozen ones: a frozen tool stays mid-run however fast the machine is.
 */
async function freezeTools(
  root: number,
  match: (argv: string[]) => boolean,
  enough: (frozen: Map<number, string[]>) => boolean,
  what: string,
): Promise<Map<number, string[]>> {
  const frozen = new Map<number, string[]>(); // pgid → the argv of the tool found in it
  const own = (await procSignals(root))!.pgid;
  await waitUntil(
    async () => {
      for (const pid of await descendants(root)) {
        const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
        if (!match(argv)) continue;
        const p = await procSignals(pid);
        if (!p || p.pgid === own || p.pgid <= 1 || frozen.has(p.pgid)) continue;
        try {
          process.kill(-p.pgid, 'SIGSTOP');
        } catch {
          continue; // gone meanwhile
        }
        frozen.set(p.pgid, argv);
      }
      return enough(frozen) || undefined;
    },
    // Generous: on a starved machine the daemon's children and their tools start slowly. Below the
    // cancel tests' own timeout (240 s), so a tool that never shows is named in the failure.
    { what, timeoutMs: 150_000, intervalMs: 5 },
  ).catch((err: Error) => {
    // Leave no stopped tool behind: nothing would ever thaw it.
    for (const pgid of frozen.keys()) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    throw new Error(`${err.message}; frozen so far: ${JSON.stringify([...frozen.values()])}`);
  });
  return frozen;
}

/**
 * After a cancel: thaw each frozen tool group the moment the cancel's SIGTERM reached it (a frozen
 * program takes it once thawed), so its job cleans up within its grace.
 */
async function thawWhenSignalled(root: number, frozen: Map<number, string[]>): Promise<void> {
  await Promise.all(
    [...frozen.keys()].map(async (pgid) => {
      await waitUntil(
        async () => {
          const members = await Promise.all((await groupPids(root, pgid)).map(procSignals));
          return members.every((m) => m === null || m.termPending) || undefined;
        },
        {
          what: `the cancel to signal the tool group ${pgid} (${frozen.get(pgid)!.join(' ')})`,
          timeoutMs: 30_000,
          intervalMs: 5,
        },
      );
      try {
        process.kill(-pgid, 'SIGCONT');
      } catch {
        // already gone
      }
    }),
  );
}

/** Live members of a process group below `root`. */
async function groupPids(root: number, pgid: number): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await toolPids(root, () => true))
    if ((await procSignals(pid))?.pgid === pgid) out.push(pid);
  return out;
}

/** A ustar archive of `n` empty files (built here: a packing library takes seconds for this many). */
function tarOfEmptyFiles(n: number): Buffer {
  const blocks: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const h = Buffer.alloc(512);
    h.write(`d${i % 50}/e${i}`, 0);
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write('00000000000\0', 124);
    h.write('14000000000\0', 136);
    h.write('        ', 148);
    h.write('0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    const sum = h.reduce((a, b) => a + b, 0);
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h);
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

const TERMINAL: JobDoc['state'][] = ['completed', 'failed', 'cancelled'];

describe('dataset job types through a real daemon', { timeout: 300_000 }, () => {
  let t: TestDb;
  let client: JobdClient;
  let base: string;
  let dirs: Record<'upload' | 'converted' | 'sync' | 'auth' | 'backup', string>;
  let remoteDir: string;
  let webdav: RcloneServer;
  let rsyncd: RsyncDaemon;
  let settings: DaemonSettings;
  let daemon: DaemonProcess;
  let obscured: string;
  /** Every daemon this file started, and every jobctl output, for the credentials check. */
  const daemons: DaemonProcess[] = [];
  const cliOutput: string[] = [];

  const write = (path: string, data: string | Buffer, mode?: number): void => {
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, data, mode !== undefined ? { mode } : {});
  };
  const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
  const tmpLeftovers = (root: string): string[] => {
    try {
      return (readdirSync(root, { recursive: true }) as string[]).filter((p) => p.includes('.jobd-tmp-'));
    } catch (err) {
      // A temporary tree being removed while it is listed: its removal is still under way.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [`(removal under way in ${root})`];
      throw err;
    }
  };

  async function start(): Promise<DaemonProcess> {
    const d = await startDaemonProcess(settings);
    daemons.push(d);
    return d;
  }

  async function settled(ids: JobId[], what: string): Promise<Record<string, JobDoc>> {
    const docs = await waitUntil(
      async () => {
        const found = await client.store.jobs.find({ _id: { $in: ids }, state: { $in: TERMINAL } }).toArray();
        return found.length === ids.length ? found : undefined;
      },
      { what, timeoutMs: 90_000, intervalMs: 100 },
    );
    return Object.fromEntries(docs.map((d) => [String(d._id), d as JobDoc]));
  }

  async function enqueue(
    type: string,
    params: Record<string, unknown>,
    maxAttempts?: number,
  ): Promise<JobId> {
    const { job } = await client.enqueue(type, params, maxAttempts !== undefined ? { maxAttempts } : {});
    return job._id;
  }

  beforeAll(async () => {
    t = await openTestDb('data_types');
    base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-data-types-')));
    dirs = {
      upload: join(base, 'data/upload'),
      converted: join(base, 'data/converted'),
      sync: join(base, 'data/sync'),
      auth: join(base, 'data/auth'),
      backup: join(base, 'data/backup'),
    };
    for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });

    // A small dataset, and larger files that bandwidth limits make slow.
    write(join(dirs.upload, 'ds1/a.txt'), 'alpha\n'.repeat(300));
    write(join(dirs.upload, 'ds1/sub/b.bin'), randomBytes(4096));
    write(join(dirs.upload, 'ds1/sub/c.txt'), 'gamma\n');
    write(join(dirs.upload, 'slow/big.bin'), randomBytes(256 * 1024));
    write(join(dirs.upload, 'slow2/big.bin'), randomBytes(96 * 1024));
    // zstd -19 takes seconds over a few MiB of random bytes: long enough to stop it mid-run.
    write(join(dirs.upload, 'zbig/big.bin'), randomBytes(4 * 1024 * 1024));
    write(join(dirs.upload, 'zmid/big.bin'), randomBytes(2 * 1024 * 1024));
    remoteDir = join(base, 'remote');
    write(join(remoteDir, 'ds1/r1.txt'), 'remote one\n');
    write(join(remoteDir, 'ds1/deep/r2.bin'), randomBytes(2048));
    write(join(remoteDir, 'slow/big.bin'), randomBytes(256 * 1024));
    write(join(remoteDir, 'slow2/big.bin'), randomBytes(40 * 1024));
    // Archives made by the real tools.
    execFileSync('tar', ['-czf', join(dirs.upload, 'ds1.tar.gz'), '-C', join(dirs.upload, 'ds1'), '.']);
    const many = join(base, 'many');
    for (let i = 0; i < 300; i++) write(join(many, `d${i % 10}/f${i}.txt`), `file ${i}\n`);
    execFileSync('tar', ['-czf', join(dirs.upload, 'many.tar.gz'), '-C', many, '.']);
    // Files whose backup takes a while, and an archive of many empty entries (small, slow to go through).
    for (let i = 0; i < 2000; i++) write(join(dirs.upload, `files/d${i % 20}/f${i}.txt`), `small ${i}\n`);
    const empties = execFileSync('zstd', ['-q', '-c'], { input: tarOfEmptyFiles(60_000) });
    write(join(dirs.upload, 'empties.tar.zst'), empties);
    write(join(dirs.upload, 'archives/empties.tar.zst'), empties);
    // A dataset whose archive is corrupt, for data_validation.
    write(
      join(dirs.upload, 'bad/broken.tar.gz'),
      Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0]), randomBytes(200)]),
    );

    webdav = await startRcloneServer('webdav', remoteDir);
    obscured = webdav.obscured;
    // The legacy per-user credentials, and a config named by the job.
    await webdav.writeConfig(join(dirs.auth, `${USER_EMAIL}.conf`));
    await webdav.writeConfig(join(dirs.sync, 'lab.conf'));
    await unreachableConfig(dirs.sync, await freePort());
    const rsyncModule = join(base, 'rsyncmod');
    mkdirSync(rsyncModule);
    mkdirSync(join(base, 'rsyncconf'));
    rsyncd = await startRsyncDaemon(rsyncModule, join(base, 'rsyncconf'), {
      user: 'bob',
      password: RSYNC_PASSWORD,
    });
    write(join(dirs.auth, 'rsync.pw'), `${RSYNC_PASSWORD}\n`, 0o600);
    const script = join(base, 'converter.mjs');
    writeFileSync(script, CONVERTER);

    settings = writeDaemonSettings({
      mongoUri: t.uri,
      database: t.dbName,
      dir: join(base, 'daemon'),
      // jobd's default kill grace, which a loaded machine honours: the cores clean up within it.
      // A lease a starved heartbeat does not lose while tools are frozen (a lost lease would re-run a
      // job beside its frozen tool); the crash case waits it out once, for the rescue.
      worker: { concurrency: 8, killGraceMs: 5_000, leaseMs: 10_000 },
      extra: {
        dataDirs: dirs,
        data: { converter: { program: process.execPath, args: [script] }, extract: { maxEntries: 100_000 } },
      },
    });
    const config = loadSettings({ file: settings.file, env: {} });
    client = await JobdClient.connect({
      mongoUri: t.uri,
      database: t.dbName,
      jobTypes: config.jobTypes,
      dataDirs: config.dataDirs,
    });
    daemon = await start();
  }, 120_000);

  afterAll(async () => {
    await killAllDaemons();
    await webdav?.stop();
    await rsyncd?.stop();
    await client?.close();
    await t?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('each type runs to the result its doc promises, with the data settings handed to the child', async () => {
    const ids = {
      rsync: await enqueue('rsync_transfer', {
        source: `${join(dirs.upload, 'ds1')}/`,
        destination: rsyncd.url('ds1/'),
        password_file: join(dirs.auth, 'rsync.pw'),
        rsync_options: '-a', // legacy flags on the allow-list
      }),
      google: await enqueue('google_sync', {
        // the legacy parameters, as jobctl migrate writes them
        dataset_uuid: '7d4f0c1e-0000-4000-8000-000000000001',
        user_email: USER_EMAIL,
        input_dir: join(dirs.sync, 'g1'),
        data_url: 'rclone:lab:ds1',
      }),
      remote: await enqueue('remote_sync', {
        source: 'lab:ds1',
        destination: join(dirs.sync, 'r1'),
        config: join(dirs.sync, 'lab.conf'),
      }),
      upload: await enqueue('file_upload', {
        files: join(dirs.upload, 'ds1'),
        destination: 'lab:up1',
        config: join(dirs.sync, 'lab.conf'),
      }),
      extract: await enqueue('file_extraction', {
        zip_file: join(dirs.upload, 'ds1.tar.gz'),
        extract_dir: join(dirs.converted, 'x1'),
      }),
      compress: await enqueue('data_compression', {
        source_dir: join(dirs.upload, 'ds1'),
        output_path: join(dirs.converted, 'ds1.tar.zst'),
      }),
      backup: await enqueue('backup_creation', { source_dir: join(dirs.upload, 'ds1') }),
      convert: await enqueue('dataset_conversion', {
        input_path: join(dirs.upload, 'ds1'),
        output_path: join(dirs.converted, 'c1'),
        sensor_type: 'TIFF',
        conversion_params: { scale: 2, label: 'x' },
      }),
    };
    const docs = await settled(Object.values(ids), 'the happy-path jobs to finish');
    const get = (id: JobId) => docs[String(id)]!;
    for (const [name, id] of Object.entries(ids)) {
      expect(get(id).state, `${name}: ${JSON.stringify(get(id).errors)}`).toBe('completed');
    }

    expect(get(ids.rsync).result).toMatchObject({ files_transferred: 3, dry_run: false });
    expect(readFileSync(join(base, 'rsyncmod/ds1/sub/c.txt'), 'utf8')).toBe('gamma\n');

    expect(get(ids.google).result).toMatchObject({ config_from: 'auth', files_transferred: 2, mode: 'copy' });
    expect(readFileSync(join(dirs.sync, 'g1/r1.txt'), 'utf8')).toBe('remote one\n');
    expect(get(ids.remote).result).toMatchObject({ config_from: 'input', files_transferred: 2 });
    expect(sha256(join(dirs.sync, 'r1/deep/r2.bin'))).toBe(sha256(join(remoteDir, 'ds1/deep/r2.bin')));

    expect(get(ids.upload).result).toMatchObject({ files: 3, transferred_files: 3, verified: true });
    expect(sha256(join(remoteDir, 'up1/sub/b.bin'))).toBe(sha256(join(dirs.upload, 'ds1/sub/b.bin')));

    expect(get(ids.extract).result).toMatchObject({
      format: 'tar.gz',
      extract_dir: join(dirs.converted, 'x1'),
    });
    expect(sha256(join(dirs.converted, 'x1/sub/b.bin'))).toBe(sha256(join(dirs.upload, 'ds1/sub/b.bin')));

    const packed = get(ids.compress).result as { sha256: string; files: number; format: string };
    expect(packed).toMatchObject({ format: 'tar.zst', files: 3 });
    expect(packed.sha256).toBe(sha256(join(dirs.converted, 'ds1.tar.zst')));
    const listed = execFileSync('tar', ['--zstd', '-tf', join(dirs.converted, 'ds1.tar.zst')], {
      encoding: 'utf8',
    });
    expect(listed).toContain('sub/b.bin');

    const snap = get(ids.backup).result as { snapshot_path: string; manifest_path: string; files: number };
    expect(snap.files).toBe(3);
    expect(snap.snapshot_path.startsWith(join(dirs.backup, 'ds1'))).toBe(true);
    expect(JSON.parse(readFileSync(snap.manifest_path, 'utf8'))).toBeTruthy();

    // The converter came from the settings (data.converter), with the legacy arguments.
    expect(get(ids.convert).result).toMatchObject({ sensor_type: 'TIFF', output_files: 4 });
    expect(JSON.parse(readFileSync(join(dirs.converted, 'c1/args.json'), 'utf8'))).toEqual({
      sensor: 'TIFF',
      params: 'label=x,scale=2',
    });

    // data_validation against the manifest just written; a corrupt archive fails, not retried, with
    // every problem on the job.
    const good = await enqueue('data_validation', { dataset_dir: join(dirs.upload, 'ds1') });
    const bad = await enqueue('data_validation', { dataset_dir: join(dirs.upload, 'bad') });
    const checked = await settled([good, bad], 'the validation jobs to finish');
    expect(checked[String(good)]).toMatchObject({
      state: 'completed',
      result: { valid: true, files: 3, manifest: snap.manifest_path, problems: [] },
    });
    const invalid = checked[String(bad)]!;
    expect(invalid).toMatchObject({ state: 'failed', attempts: 1 });
    expect(invalid.errors[0]).toMatchObject({ name: 'DatasetInvalidError', code: 'JOBD_DO_NOT_RETRY' });
    expect(invalid.errors[0]!.details).toMatchObject({
      valid: false,
      problems: [
        expect.objectContaining({ kind: 'archive', path: expect.stringContaining('broken.tar.gz') }),
      ],
    });
  }, 120_000);

  it('an unreachable remote is retried; a missing file is not', async () => {
    const down = await enqueue(
      'remote_sync',
      {
        source: 'lab:ds1',
        destination: join(dirs.sync, 'down'),
        config: join(dirs.sync, 'unreachable.conf'),
        options: { retries: 1 },
      },
      2,
    );
    const missing = await enqueue('file_extraction', {
      archive: join(dirs.upload, 'no-such.tar.gz'),
      extract_dir: join(dirs.converted, 'm1'),
    });
    const docs = await settled([down, missing], 'the failing jobs to fail');
    const d = docs[String(down)]!;
    expect(d).toMatchObject({ state: 'failed', attempts: 2 });
    for (const e of d.errors) expect(e).toMatchObject({ name: 'ToolFailedError', code: 'JOBD_TOOL_FAILED' });
    expect(d.errors[0]!.message).toContain('connection refused');
    // file_extraction allows 3 attempts: a missing archive uses one.
    const m = docs[String(missing)]!;
    expect(m).toMatchObject({ state: 'failed', attempts: 1, maxAttempts: 3 });
    expect(m.errors[0]).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
  }, 120_000);

  it('a cancel mid-run kills the tool (rsync, rclone copy, rclone upload, zstd, the converter) and leaves no partial output', async () => {
    const gate = join(base, 'gate-cancel');
    writeFileSync(gate, '');
    const jobs = [
      {
        needle: 'rs-cancel',
        id: await enqueue('rsync_transfer', {
          source: join(dirs.upload, 'slow'),
          destination: join(dirs.sync, 'rs-cancel'),
          options: { bwlimit: 4 },
        }),
      },
      {
        needle: 'rc-cancel',
        id: await enqueue('remote_sync', {
          source: 'lab:slow',
          destination: join(dirs.sync, 'rc-cancel'),
          config: join(dirs.sync, 'lab.conf'),
          options: { bandwidth_limit: '4K' },
        }),
      },
      {
        needle: 'up-cancel',
        id: await enqueue('file_upload', {
          files: join(dirs.upload, 'slow'),
          destination: 'lab:up-cancel',
          config: join(dirs.sync, 'lab.conf'),
          options: { bandwidth_limit: '4K' },
        }),
      },
      {
        // zstd writes to a pipe: its level tells it apart (nothing else here runs at -19).
        needle: '=-19',
        id: await enqueue('data_compression', {
          source_dir: join(dirs.upload, 'zbig'),
          output_path: join(dirs.converted, 'z-cancel.tar.zst'),
          level: 19,
          threads: 1,
        }),
      },
      {
        needle: 'cv-cancel',
        id: await enqueue('dataset_conversion', {
          input_path: join(dirs.upload, 'ds1'),
          output_path: join(dirs.converted, 'cv-cancel'),
          sensor_type: 'TIFF',
          conversion_params: { gate },
        }),
      },
    ];
    // Each tool is frozen as it shows, so all five are mid-run when the cancels land, however the
    // load spreads their starts (a fast one could otherwise finish first).
    const needles = jobs.map((j) => argMatch(j.needle));
    const frozen = await freezeTools(
      daemon.pid,
      (a) => needles.some((m) => m(a)),
      (f) => needles.every((m) => [...f.values()].some(m)),
      'rsync, rclone copy, rclone upload, zstd and the converter to run',
    );
    const pids = (await Promise.all([...frozen.keys()].map((g) => groupPids(daemon.pid, g)))).flat();
    for (const j of jobs) await client.cancel(j.id);
    await thawWhenSignalled(daemon.pid, frozen);
    const docs = await settled(
      jobs.map((j) => j.id),
      'the cancelled jobs to settle',
    );
    for (const j of jobs)
      expect({ job: j.needle, state: docs[String(j.id)]!.state }).toEqual({
        job: j.needle,
        state: 'cancelled',
      });
    await allGone(pids, 'the cancelled jobs’ tools');
    // The converter's output is whole or absent: the stopped job removes what it had written.
    expect(readdirSync(dirs.converted)).not.toContain('z-cancel.tar.zst');
    await waitUntil(() => tmpLeftovers(dirs.converted).length === 0, {
      what: `the cancelled jobs' temporary outputs to be removed (${tmpLeftovers(dirs.converted).join(', ')})`,
      timeoutMs: 20_000,
    });
    rmSync(gate);
  }, 240_000);

  it('a cancel mid-run stops file_extraction, data_validation and backup_creation: their tools gone, nothing partial left', async () => {
    const extractDir = join(dirs.converted, 'x-stop');
    const backupDir = join(dirs.backup, 'bk-stop');
    const ids = [
      await enqueue('file_extraction', {
        archive: join(dirs.upload, 'empties.tar.zst'),
        extract_dir: extractDir,
      }),
      await enqueue('data_validation', { dataset_dir: join(dirs.upload, 'archives') }),
      await enqueue('backup_creation', { source_dir: join(dirs.upload, 'files'), backup_dir: backupDir }),
    ];
    // Each job's tool is frozen mid-run: the zstd of the extraction and of the validation (two at once
    // are one of each: each job runs one), and the backup's rsync.
    const isZstd = (a: string[]) => (a[0] ?? '').endsWith('zstd') && a.includes('-d');
    const isRsync = (a: string[]) => (a[0] ?? '').endsWith('rsync') && a.some((x) => x.includes('bk-stop'));
    const frozen = await freezeTools(
      daemon.pid,
      (a) => isZstd(a) || isRsync(a),
      (f) => [...f.values()].filter(isZstd).length >= 2 && [...f.values()].some(isRsync),
      'the zstd of file_extraction and data_validation and the rsync of backup_creation to run',
    );
    const pids = (await Promise.all([...frozen.keys()].map((g) => groupPids(daemon.pid, g)))).flat();
    for (const id of ids) await client.cancel(id);
    await thawWhenSignalled(daemon.pid, frozen);
    const docs = await settled(ids, 'the cancelled jobs to settle');
    expect(ids.map((id) => `${docs[String(id)]!.type}: ${docs[String(id)]!.state}`)).toEqual([
      'file_extraction: cancelled',
      'data_validation: cancelled',
      'backup_creation: cancelled',
    ]);
    await allGone(pids, 'the cancelled jobs’ tools');
    const left = () => [dirs.converted, dirs.backup].flatMap(tmpLeftovers);
    const stillLeft = await waitUntil(() => left().length === 0, {
      what: 'the cancelled jobs’ temporary outputs to be removed',
      timeoutMs: 20_000,
    }).then(
      () => [],
      () => left(),
    );
    expect(stillLeft).toEqual([]);
    expect(readdirSync(dirs.converted)).not.toContain('x-stop');
    expect(readdirSync(backupDir)).toEqual([]);
  }, 240_000);

  it('a SIGKILLed daemon, then a restarted one rescues every job and re-runs it whole', async () => {
    await daemon.stop('SIGTERM');
    const gate = join(base, 'gate-crash');
    writeFileSync(gate, '');
    const first = await start();
    const held = {
      rsync: await enqueue('rsync_transfer', {
        source: join(dirs.upload, 'slow2'),
        destination: join(dirs.sync, 'rs-crash'),
        options: { bwlimit: 24 },
      }),
      remote: await enqueue('remote_sync', {
        source: 'lab:slow2',
        destination: join(dirs.sync, 'rc-crash'),
        config: join(dirs.sync, 'lab.conf'),
        options: { bandwidth_limit: '8K' },
      }),
      convert: await enqueue('dataset_conversion', {
        input_path: join(dirs.upload, 'ds1'),
        output_path: join(dirs.converted, 'cv-crash'),
        sensor_type: 'MRC',
        conversion_params: { gate },
      }),
    };
    // Beside them, jobs that may be anywhere in their run when the daemon dies.
    const others = {
      extract: await enqueue('file_extraction', {
        archive: join(dirs.upload, 'many.tar.gz'),
        extract_dir: join(dirs.converted, 'x-crash'),
      }),
      compress: await enqueue('data_compression', {
        source_dir: join(dirs.upload, 'ds1'),
        output_path: join(dirs.converted, 'crash.tar.zst'),
      }),
      backup: await enqueue('backup_creation', {
        source_dir: join(dirs.upload, 'ds1'),
        backup_dir: join(dirs.backup, 'crash'),
      }),
      upload: await enqueue('file_upload', {
        files: join(dirs.upload, 'ds1'),
        destination: 'lab:up-crash',
        config: join(dirs.sync, 'lab.conf'),
      }),
      google: await enqueue('google_sync', {
        dataset_uuid: '7d4f0c1e-0000-4000-8000-000000000002',
        user_email: USER_EMAIL,
        input_dir: join(dirs.sync, 'g-crash'),
        data_url: 'rclone:lab:ds1',
      }),
      validate: await enqueue('data_validation', { dataset_dir: join(dirs.upload, 'ds1') }),
    };
    // A compression with zstd mid-write when the daemon dies.
    const zmid = await enqueue('data_compression', {
      source_dir: join(dirs.upload, 'zmid'),
      output_path: join(dirs.converted, 'z-crash.tar.zst'),
      level: 19,
      threads: 1,
    });
    // The daemon dies while rsync, rclone, the converter and zstd all run.
    // Each is frozen as it shows, so all four are mid-run however the load spreads their starts.
    const needles = ['rs-crash', 'rc-crash', 'cv-crash', '=-19'].map(argMatch);
    const frozen = await freezeTools(
      first.pid,
      (a) => needles.some((m) => m(a)),
      (f) => needles.every((m) => [...f.values()].some(m)),
      'rsync, rclone, the converter and zstd to run',
    );
    const pids = (await Promise.all([...frozen.keys()].map((g) => groupPids(first.pid, g)))).flat();
    first.signal('SIGKILL');
    await first.exited;
    for (const pgid of frozen.keys()) {
      try {
        process.kill(-pgid, 'SIGCONT'); // thawed: they meet the daemon's death as running tools
      } catch {
        // already gone
      }
    }
    // The crash left half-written outputs under their temporary names, never in place.
    const halfDone = tmpLeftovers(dirs.converted);
    expect(halfDone.some((p) => p.startsWith('.z-crash.tar.zst.jobd-tmp-'))).toBe(true);
    expect(halfDone.some((p) => p.startsWith('.cv-crash.jobd-tmp-'))).toBe(true);
    expect(readdirSync(dirs.converted)).not.toContain('z-crash.tar.zst');
    // The tools die with the process that ran them.
    await allGone(pids, 'the tools of the killed daemon');
    rmSync(gate);

    await start();
    const ids = [...Object.values(held), zmid, ...Object.values(others)];
    const docs = await settled(ids, 'the rescued jobs to finish');
    for (const id of ids) {
      const d = docs[String(id)]!;
      expect(d.state, `${d.type}: ${JSON.stringify(d.errors)}`).toBe('completed');
    }
    // The jobs that were mid-run went through a rescue (their first attempt was lost with the daemon).
    for (const id of [...Object.values(held), zmid])
      expect(docs[String(id)]!.attempts, JSON.stringify(docs[String(id)])).toBeGreaterThanOrEqual(2);
    const zipped = docs[String(zmid)]!.result as { sha256: string; input_bytes: number };
    expect(zipped).toMatchObject({ input_bytes: 2 * 1024 * 1024 });
    expect(zipped.sha256).toBe(sha256(join(dirs.converted, 'z-crash.tar.zst')));

    expect(sha256(join(dirs.sync, 'rs-crash/slow2/big.bin'))).toBe(
      sha256(join(dirs.upload, 'slow2/big.bin')),
    );
    expect(sha256(join(dirs.sync, 'rc-crash/big.bin'))).toBe(sha256(join(remoteDir, 'slow2/big.bin')));
    expect(readdirSync(join(dirs.converted, 'cv-crash')).sort()).toEqual(['a.txt', 'args.json', 'sub']);
    expect(
      readdirSync(join(dirs.converted, 'x-crash'), { recursive: true }).filter((p) =>
        String(p).endsWith('.txt'),
      ),
    ).toHaveLength(300);
    const packed = docs[String(others.compress)]!.result as { sha256: string };
    expect(packed.sha256).toBe(sha256(join(dirs.converted, 'crash.tar.zst')));
    execFileSync('tar', ['--zstd', '-tf', join(dirs.converted, 'crash.tar.zst')]);
    expect(docs[String(others.upload)]!.result).toMatchObject({ files: 3, verified: true });
    expect(sha256(join(remoteDir, 'up-crash/sub/b.bin'))).toBe(sha256(join(dirs.upload, 'ds1/sub/b.bin')));
    expect(readFileSync(join(dirs.sync, 'g-crash/r1.txt'), 'utf8')).toBe('remote one\n');
    expect(docs[String(others.validate)]!.result).toMatchObject({ valid: true, problems: [] });
    // Nothing partial is left anywhere in the data dirs.
    for (const d of Object.values(dirs)) expect(tmpLeftovers(d)).toEqual([]);
  }, 180_000);

  it('a field of the wrong type, or a path outside the data dirs, is refused at enqueue (library and jobctl, exit 2)', async () => {
    const lib = await client
      .enqueue('file_extraction', { zip_file: 42, extract_dir: join(dirs.converted, 'z') })
      .catch((e: unknown) => e);
    expect(lib).toBeInstanceOf(ValidationError);
    expect((lib as Error).message).toContain('params.zip_file (legacy name of archive) = 42 is not allowed');

    const jobctl = (type: string, params: unknown) =>
      runCli(JOBCTL_BIN, [
        'enqueue',
        type,
        '--params',
        JSON.stringify(params),
        '--settings',
        settings.file,
      ]).then((r) => {
        cliOutput.push(r.stdout, r.stderr);
        return r;
      });
    const wrong = await jobctl('data_compression', { source_dir: join(dirs.upload, 'ds1'), level: 'max' });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('params.level = "max" is not allowed');
    const outside = await jobctl('rsync_transfer', { source: '/etc', destination: join(dirs.sync, 'etc') });
    expect(outside.code).toBe(2);
    expect(outside.stderr).toContain('params.source = "/etc" is not allowed');
    const flag = await jobctl('rsync_transfer', {
      source: join(dirs.upload, 'ds1'),
      destination: join(dirs.sync, 'x'),
      rsync_options: '-a -e ssh',
    });
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('params.rsync_options');
    expect(
      await client.store.jobs.countDocuments({
        $or: [
          { 'params.zip_file': 42 },
          { 'params.level': 'max' },
          { 'params.source': '/etc' },
          { 'params.rsync_options': '-a -e ssh' },
        ],
      }),
    ).toBe(0);
  }, 60_000);

  it('no credential appears in any output: daemons, job logs, job documents, jobctl', async () => {
    const texts: string[] = [...cliOutput];
    for (const d of daemons) texts.push(JSON.stringify(d.lines()), d.text());
    for (const f of readdirSync(settings.logDir)) texts.push(readFileSync(join(settings.logDir, f), 'utf8'));
    texts.push(JSON.stringify(await client.store.jobs.find({}).toArray()));
    const all = texts.join('\n');
    // Something was captured: the jobs' logs and documents are there.
    expect(readdirSync(settings.logDir).length).toBeGreaterThan(10);
    expect(all).toContain('rsync_transfer');
    for (const secret of [PASSWORD, obscured, RSYNC_PASSWORD]) expect(all).not.toContain(secret);
  });
});
