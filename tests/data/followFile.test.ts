import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashAndSyncWhileWritten } from '../../src/jobs/data/lib/followFile.js';
import { failure, tempDir } from './helpers.js';

let base: { dir: string; cleanup(): Promise<void> };
beforeEach(async () => (base = await tempDir('follow')));
afterEach(() => base.cleanup());

/** A real program appending to `fd` in many writes (its stdout), as a compressor does. */
function writer(fd: number, script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('sh', ['-c', script], { stdio: ['ignore', fd, 'ignore'] });
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited ${code}`))));
  });
}

describe('hashAndSyncWhileWritten', () => {
  it('hashes a file while a program appends to it: the digest and size are the whole file', async () => {
    const path = join(base.dir, 'out.bin');
    const fh = await open(path, 'wx+');
    try {
      // 12 writes of 256 KiB with pauses: the reader catches up and waits several times; a small sync
      // step makes it flush mid-way too.
      const w = writer(
        fh.fd,
        'i=0; while [ $i -lt 12 ]; do head -c 262144 /dev/urandom; i=$((i+1)); [ $((i % 4)) -eq 0 ] && sleep 0.05; done',
      );
      const res = await hashAndSyncWhileWritten(fh, w, 256 << 10);
      const bytes = await readFile(path);
      expect(res.bytes).toBe(12 * 262144);
      expect(bytes.length).toBe(res.bytes);
      expect(res.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    } finally {
      await fh.close();
    }
  });

  it('an empty output hashes as empty', async () => {
    const fh = await open(join(base.dir, 'empty.bin'), 'wx+');
    try {
      const res = await hashAndSyncWhileWritten(fh, writer(fh.fd, 'true'));
      expect(res).toEqual({ bytes: 0, sha256: createHash('sha256').digest('hex') });
    } finally {
      await fh.close();
    }
  });

  it("rejects with the writer's error when it fails mid-way", async () => {
    const fh = await open(join(base.dir, 'bad.bin'), 'wx+');
    try {
      const err = await failure(
        hashAndSyncWhileWritten(fh, writer(fh.fd, 'head -c 300000 /dev/urandom; exit 3')),
      );
      expect(err.message).toBe('writer exited 3');
    } finally {
      await fh.close();
    }
  });
});
