/**
 * `jobctl doctor`: checks the settings, the database (reachable, version, indexes, change streams),
 * the folders jobd writes, the external tools its data job types run, and clock skew. Each check is
 * ok, warn or fail, with a hint for the fix.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedConfig } from '../config/types.js';
import {
  changeStreamsSupported,
  listWorkers,
  jobIndexProblems,
  serverInfo,
  type Store,
} from '../store/index.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  hint?: string;
}

/** Clock differences up to this are normal (network round trips, timer granularity). */
const SKEW_WARN_MS = 2_000;

/** The external programs jobd's data job types run, and the argument that prints their version. */
export const EXTERNAL_TOOLS: { name: string; args: string[]; usedBy: string }[] = [
  { name: 'rsync', args: ['--version'], usedBy: 'rsync_transfer' },
  { name: 'rclone', args: ['version'], usedBy: 'google_sync (rclone remotes)' },
  { name: 'zstd', args: ['--version'], usedBy: 'data_compression, backup_creation' },
  { name: 'lz4', args: ['--version'], usedBy: 'data_compression (lz4, tar.lz4)' },
  { name: 'tar', args: ['--version'], usedBy: 'data_compression (tar.zst, tar.lz4)' },
];

function toolVersion(
  name: string,
  args: string[],
): Promise<{ ok: true; version: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    execFile(name, args, { timeout: 5_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT')
        return resolve({ ok: false, error: 'not found on PATH' });
      const first = `${stdout}${stderr}`.split('\n').find((l) => l.trim() !== '') ?? '';
      if (err && !first) return resolve({ ok: false, error: err.message });
      resolve({ ok: true, version: first.trim() });
    });
  });
}

function writable(dir: string): string | null {
  try {
    mkdirSync(dir, { recursive: true });
    const probe = join(dir, `.jobd-doctor-${randomBytes(4).toString('hex')}`);
    writeFileSync(probe, 'ok');
    rmSync(probe, { force: true });
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** Checks that need no database. */
export async function localChecks(
  config: ResolvedConfig,
  settingsFile: string | undefined,
): Promise<Check[]> {
  const checks: Check[] = [
    {
      name: 'settings',
      status: 'ok',
      detail: `loaded${settingsFile ? ` from ${settingsFile}` : ' (no settings file: defaults and JOBD_* variables)'}; ${Object.keys(config.jobTypes).length} job types`,
    },
  ];
  const dirs: [string, string][] = [
    ['dataDir', config.dataDir],
    ['logDir', config.logDir],
    ...Object.entries(config.dataDirs).map(([name, d]): [string, string] => [`dataDirs.${name}`, d]),
  ];
  for (const [key, dir] of dirs) {
    const err = writable(dir);
    checks.push(
      err === null
        ? { name: `writable ${key}`, status: 'ok', detail: dir }
        : {
            name: `writable ${key}`,
            status: 'fail',
            detail: `${dir}: ${err}`,
            hint: `create ${dir} and give the jobd user write access, or change ${key}`,
          },
    );
  }
  for (const t of EXTERNAL_TOOLS) {
    const v = await toolVersion(t.name, t.args);
    checks.push(
      v.ok
        ? { name: `tool ${t.name}`, status: 'ok', detail: v.version }
        : {
            name: `tool ${t.name}`,
            status: 'warn',
            detail: v.error,
            hint: `install ${t.name} (apt-get install ${t.name}); needed by ${t.usedBy}`,
          },
    );
  }
  return checks;
}

/** Checks against the database; `store` null means it could not be reached (`error` says why). */
export async function databaseChecks(
  store: Store | null,
  config: ResolvedConfig,
  error?: string,
): Promise<Check[]> {
  if (!store) {
    return [
      {
        name: 'database',
        status: 'fail',
        detail: `unreachable: ${error ?? 'unknown error'}`,
        hint:
          config.mongoUri === 'embedded'
            ? 'start jobd (it serves the embedded database), or set mongoUri'
            : 'check mongoUri, the network and the credentials',
      },
    ];
  }
  const checks: Check[] = [];
  try {
    const info = await serverInfo(store);
    checks.push({
      name: 'database',
      status: 'ok',
      detail: `reachable, version ${info.version}, database ${config.database}`,
    });
    const [major] = info.version.split('.').map(Number);
    if (major !== undefined && major < 7) {
      checks.push({
        name: 'database version',
        status: 'warn',
        detail: `${info.version}: perf needs $percentile (MongoDB 7.0)`,
        hint: 'upgrade to MongoDB 7.0 or later',
      });
    }
    if (info.localTime) {
      const mid = info.sentAt + info.roundTripMs / 2;
      const skew = mid - info.localTime.getTime();
      checks.push(
        Math.abs(skew) <= SKEW_WARN_MS + info.roundTripMs
          ? { name: 'clock skew (jobctl vs database)', status: 'ok', detail: `${Math.round(skew)} ms` }
          : {
              name: 'clock skew (jobctl vs database)',
              status: 'warn',
              detail: `${Math.round(skew)} ms`,
              hint: 'run NTP (systemd-timesyncd, chrony) on this host and the database host',
            },
      );
      // A daemon's heartbeat is written with its own clock: one in the database's future shows a clock ahead.
      const workers = await listWorkers(store, { now: info.localTime, leaseMs: config.worker.leaseMs });
      for (const w of workers.filter((x) => x.state !== 'stopped' && !x.dead)) {
        const ahead = w.heartbeatAt.getTime() - info.localTime.getTime();
        checks.push(
          ahead <= SKEW_WARN_MS
            ? {
                name: `clock skew (daemon ${w._id})`,
                status: 'ok',
                detail: `last heartbeat ${Math.round(-ahead)} ms before the database's now`,
              }
            : {
                name: `clock skew (daemon ${w._id})`,
                status: 'warn',
                detail: `its heartbeat is ${ahead} ms ahead of the database's clock`,
                hint: `run NTP on ${w.host}: leases and retry times follow each daemon's clock`,
              },
        );
      }
    }
    const { missing, changed, retired } = await jobIndexProblems(store);
    checks.push(
      missing.length + changed.length + retired.length === 0
        ? { name: 'indexes', status: 'ok', detail: "all of jobd's indexes on jobs exist" }
        : {
            name: 'indexes',
            status: 'warn',
            detail: [
              ...(missing.length ? [`missing on jobs: ${missing.join(', ')}`] : []),
              ...(changed.length ? [`an older definition on jobs: ${changed.join(', ')}`] : []),
              ...(retired.length ? [`no longer used on jobs: ${retired.join(', ')}`] : []),
            ].join('; '),
            hint: 'start jobd once, or enqueue a job with jobctl: either creates them, rebuilds older ones and drops unused ones',
          },
    );
    const cs = await changeStreamsSupported(store);
    checks.push(
      cs.ok
        ? { name: 'change streams', status: 'ok', detail: 'supported: daemons wake on new jobs at once' }
        : {
            name: 'change streams',
            status: 'warn',
            detail: `not available (${cs.error})`,
            hint: 'run MongoDB as a replica set (a one-member set is enough); daemons poll meanwhile',
          },
    );
  } catch (err) {
    checks.push({
      name: 'database',
      status: 'fail',
      detail: err instanceof Error ? err.message : String(err),
      hint: "check the database user's rights (buildInfo, hello, listIndexes)",
    });
  }
  return checks;
}

export function worstOf(checks: readonly Check[]): CheckStatus {
  if (checks.some((c) => c.status === 'fail')) return 'fail';
  return checks.some((c) => c.status === 'warn') ? 'warn' : 'ok';
}
