/**
 * The spawn helper: a small process of the daemon's that starts isolated children for it
 * (`node spawnHelperEntry.cjs`, forked with an IPC channel; see spawnHelper.ts for why).
 *
 * Messages in:  { t: 'spawn', id, file, args, env, cwd?, logFile }
 * Messages out: { t: 'spawned', id, pid } with the child's fd-3 socket as the message's handle,
 *               { t: 'failed', id, message, code? } when the child could not be started,
 *               { t: 'exit', id, code, signal } when a started child has exited.
 *
 * The child is started as the daemon would start it: detached (its own process group), stdin
 * /dev/null, stdout and stderr appended to the job's log file, fd 3 a socketpair. The helper keeps no
 * copy of fd 3 (the handle is closed here once sent), so the child sees end-of-file when the daemon
 * goes. The helper ignores the signals a terminal or a service manager sends its group: the daemon
 * decides when it stops, by closing the channel. When the channel closes (the daemon stopped or
 * died) the helper exits at once, or within half a second of its re-parenting when Node holds the
 * close back (below); children still running go on as the daemon's own would.
 * Only Node's builtins and spawnLogged.cts: it starts once per sandbox and stays small, so that its
 * forks stay cheap.
 */
import type { ChildProcess } from 'node:child_process';
import { spawnLogged, type LoggedSpawn } from './spawnLogged.cjs';

interface SpawnRequest extends LoggedSpawn {
  t: 'spawn';
  id: number;
}

for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const) process.on(s, () => {});
process.on('disconnect', () => process.exit(0));
// 'disconnect' alone is not enough: Node holds it back while a handle this process sent (a child's
// socket) waits for the other side's acknowledgement, which a daemon that died just then never sends.
// The helper would stay, and with it the child's socket. A dead daemon leaves the helper re-parented.
const daemonPid = process.ppid;
setInterval(() => {
  if (process.ppid !== daemonPid) process.exit(0);
}, 500).unref();

function reply(m: Record<string, unknown>, handle?: unknown): void {
  if (!process.connected) return;
  try {
    process.send!(m, handle as never);
  } catch {
    // the channel closed meanwhile: 'disconnect' ends the helper
  }
}

function failed(id: number, err: unknown): void {
  const e = err as NodeJS.ErrnoException;
  reply({ t: 'failed', id, message: String(e?.message ?? err), ...(e?.code ? { code: e.code } : {}) });
}

function start(m: SpawnRequest): void {
  let child: ChildProcess;
  try {
    child = spawnLogged(m);
  } catch (err) {
    return failed(m.id, err);
  }
  if (child.pid === undefined) {
    // Not started (ENOENT, EACCES, EAGAIN...): Node reports it as 'error' on the next tick.
    child.once('error', (err) => failed(m.id, err));
    return;
  }
  child.on('error', () => {}); // a failed kill() or send(): nothing the helper does
  child.once('exit', (code, signal) => reply({ t: 'exit', id: m.id, code, signal }));
  reply({ t: 'spawned', id: m.id, pid: child.pid }, child.stdio[3]);
}

process.on('message', (m: SpawnRequest) => {
  if (m?.t === 'spawn') start(m);
});
