import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ResolvedConfig } from '../../src/config/types.js';
import { jobLogFile } from '../../src/worker/executor.js';

describe("a job's log file", () => {
  it('is join(logDir, `${id}.log`) for every directory spelling and id', () => {
    const dirs = ['/var/log/jobd', '/var/log/jobd/', 'logs//a/', '.', '', './x/../y', '/'];
    const ids = ['01JABCDEFG', 'a_b-c', '../../etc/passwd', 'a/b', 'x.y', ''];
    for (const logDir of dirs) {
      const config = { logDir } as ResolvedConfig;
      for (const id of ids) expect(jobLogFile(config, id)).toBe(join(logDir, `${id}.log`));
    }
  });
});
