/**
 * The programs dataset jobs run: the Debian package that brings each one, and what each exit code
 * means for a retry. A code not in a table uses the tool's `otherRetryable`.
 */
export interface ExitMeaning {
  retryable: boolean;
  meaning: string;
}

export interface ToolDef {
  /** Name used in messages. */
  name: string;
  /** Program looked up on PATH unless a path is given. */
  program: string;
  debianPackage: string;
  exitCodes: Record<number, ExitMeaning>;
  /** For exit codes missing from the table. */
  otherRetryable: boolean;
}

const r = (meaning: string): ExitMeaning => ({ retryable: true, meaning });
const n = (meaning: string): ExitMeaning => ({ retryable: false, meaning });

/** rsync(1) "EXIT VALUES". */
export const RSYNC: ToolDef = {
  name: 'rsync',
  program: 'rsync',
  debianPackage: 'rsync',
  otherRetryable: true,
  exitCodes: {
    1: n('syntax or usage error'),
    2: n('protocol incompatibility'),
    3: n('errors selecting input/output files, dirs'),
    4: n('requested action not supported'),
    5: r('error starting client-server protocol'),
    6: n('daemon unable to append to log-file'),
    10: r('error in socket I/O'),
    11: r('error in file I/O'),
    12: r('error in rsync protocol data stream'),
    13: n('errors with program diagnostics'),
    14: r('error in IPC code'),
    20: r('received SIGUSR1 or SIGINT'),
    21: r('some error returned by waitpid()'),
    22: r('error allocating core memory buffers'),
    23: r('partial transfer due to error'),
    24: r('partial transfer due to vanished source files'),
    25: n('the --max-delete limit stopped deletions'),
    30: r('timeout in data send/receive'),
    35: r('timeout waiting for daemon connection'),
  },
};

/** rclone's documented exit codes (docs/content/docs.md, "Exit Code"). */
export const RCLONE: ToolDef = {
  name: 'rclone',
  program: 'rclone',
  debianPackage: 'rclone',
  otherRetryable: true,
  exitCodes: {
    1: n('syntax or usage error'),
    2: r('error not otherwise categorised'),
    3: n('directory not found'),
    4: n('file not found'),
    5: r('temporary error (more retries might fix it)'),
    6: n('less serious errors (no retry)'),
    7: n('fatal error (retries will not fix it)'),
    8: r('transfer limit (--max-transfer) reached'),
    9: n('no files transferred (--error-on-no-transfer)'),
    10: r('duration limit (--max-duration) reached'),
  },
};

/** GNU tar(1) "RETURN VALUE". */
export const TAR: ToolDef = {
  name: 'tar',
  program: 'tar',
  debianPackage: 'tar',
  otherRetryable: true,
  exitCodes: {
    1: r('a file changed while it was read'),
    2: r('fatal error (a file vanished or could not be read)'),
  },
};
export const ZSTD: ToolDef = {
  name: 'zstd',
  program: 'zstd',
  debianPackage: 'zstd',
  otherRetryable: true,
  exitCodes: { 1: n('bad arguments or corrupt input') },
};

export const LZ4: ToolDef = {
  name: 'lz4',
  program: 'lz4',
  debianPackage: 'lz4',
  otherRetryable: true,
  exitCodes: { 1: n('bad arguments or corrupt input') },
};

/**
 * An external dataset converter. Converters have no common table: usage errors (2) and programs that
 * cannot run (126, 127) are permanent, anything else may be a passing failure.
 */
export function converterTool(program: string): ToolDef {
  return {
    name: 'converter',
    program,
    debianPackage: '(the converter configured for dataset_conversion)',
    otherRetryable: true,
    exitCodes: {
      2: n('usage error'),
      126: n('the converter cannot be executed'),
      127: n('the converter was not found'),
    },
  };
}
