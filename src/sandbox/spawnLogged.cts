/**
 * How an isolated child is started, by the spawn helper (spawnHelperEntry.cts) or, when there is none
 * to ask, by the daemon (spawnHelper.ts): detached (its own process group), stdin /dev/null, stdout
 * and stderr appended to the job's log file, fd 3 a socketpair. Only Node's builtins (the helper loads it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface LoggedSpawn {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string;
  /** The child's stdout and stderr are appended to it. */
  logFile: string;
}

/** Throws when the log file cannot be opened or the spawn fails at once; later failures are 'error'. */
export function spawnLogged(s: LoggedSpawn): ChildProcess {
  const fd = openSync(s.logFile, 'a');
  try {
    return spawn(s.file, s.args, {
      env: s.env,
      ...(s.cwd ? { cwd: s.cwd } : {}),
      detached: true,
      stdio: ['ignore', fd, fd, 'pipe'],
    });
  } finally {
    closeSync(fd);
  }
}
