/**
 * The README's "Writing a job type" example, run as written: its handler file and settings (kept in
 * tests/fixtures/readme, which must equal the README's code blocks) in a folder outside the checkout,
 * its two commands run from the checkout. Only the embedded server's port is moved, by JOBD_EMBEDDED__PORT,
 * so the test cannot collide with a jobd already on 27117.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Proc, run, tempDir } from './proc.js';

const ROOT = resolve(import.meta.dirname, '../..');
const FIXTURES = join(ROOT, 'tests/fixtures/readme');

/** The fenced block that follows the first line containing `marker`. */
function codeBlockAfter(text: string, marker: string): string {
  const at = text.indexOf(marker);
  if (at < 0) throw new Error(`README has no ${JSON.stringify(marker)}`);
  const open = text.indexOf('```', at);
  const start = text.indexOf('\n', open) + 1;
  return text.slice(start, text.indexOf('```', start));
}

/** Shell words of a plain command line: spaces between words, single quotes around one; nothing else. */
function shellWords(line: string): string[] {
  if (/["\\$`;|&<>()*?]/.test(line.replace(/'[^']*'/g, ''))) {
    throw new Error(`the README command uses shell syntax this test does not run: ${line}`);
  }
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => res(port));
    });
  });
}

describe('the README example', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

  it('is the code kept in tests/fixtures/readme', () => {
    const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');
    expect(codeBlockAfter(readme, '`~/pipeline/checksum.mjs`:')).toBe(fixture('checksum.mjs'));
    expect(codeBlockAfter(readme, '`~/pipeline/settings.json`')).toBe(fixture('settings.json'));
    expect(codeBlockAfter(readme, 'Start jobd with these settings')).toBe(fixture('commands.sh'));
  });

  it('runs as written, from a folder outside the checkout', { timeout: 180_000 }, async () => {
    const pipeline = tempDir('pipeline');
    copyFileSync(join(FIXTURES, 'checksum.mjs'), join(pipeline, 'checksum.mjs'));
    copyFileSync(join(FIXTURES, 'settings.json'), join(pipeline, 'settings.json'));
    const [startJobd, enqueue] = readFileSync(join(FIXTURES, 'commands.sh'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => shellWords(line.replaceAll('~/pipeline', pipeline)));
    expect(startJobd!.slice(0, 2)).toEqual(['node', 'bin/jobd']);
    expect(enqueue!.slice(0, 2)).toEqual(['node', 'bin/jobctl']);

    const env = { JOBD_EMBEDDED__PORT: String(await freePort()) };
    const daemon = new Proc('jobd', startJobd!.slice(2), { cwd: ROOT, env });
    try {
      await daemon.waitForLine('"msg":"jobd started"', 60_000);
      const r = await run('jobctl', enqueue!.slice(2), { cwd: ROOT, env, timeoutMs: 120_000 });
      expect(r.stderr).toBe('');
      expect(r.code, r.stdout).toBe(0);
      const [id, done] = r.stdout.trim().split('\n');
      expect(id).toMatch(/^[0-9a-f]{24}$/);
      const file = '/etc/os-release';
      const expected = {
        path: file,
        bytes: statSync(file).size,
        sha256: createHash('sha256').update(readFileSync(file)).digest('hex'),
      };
      expect(done).toBe(`job ${id} completed: ${JSON.stringify(expected)}`);
    } finally {
      const exit = await daemon.stop();
      expect(exit.code).toBe(0);
    }
  });
});
