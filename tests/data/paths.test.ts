import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { confine, recheck } from '../../src/jobs/lib/paths.js';
import { failure, tempDir } from './helpers.js';

let base: { dir: string; cleanup(): Promise<void> };
let upload: string;
let backup: string;
let outside: string;
let roots: Record<string, string>;

beforeAll(async () => {
  base = await tempDir('paths');
  upload = join(base.dir, 'data', 'upload');
  backup = join(base.dir, 'data', 'backup');
  outside = join(base.dir, 'elsewhere');
  for (const d of [upload, backup, outside]) await mkdir(d, { recursive: true });
  await writeFile(join(upload, 'a.txt'), 'a');
  await writeFile(join(outside, 'secret.txt'), 's');
  roots = { upload, backup };
});
afterAll(() => base.cleanup());

describe('confine', () => {
  it('accepts a path inside a data dir and names the root', async () => {
    const c = await confine(join(upload, 'a.txt'), roots, {
      field: 'zip_file',
      mustExist: true,
      kind: 'file',
    });
    expect(c).toMatchObject({ exists: true, rootName: 'upload' });
  });

  it('works with a plain list of roots', async () => {
    const c = await confine(join(upload, 'a.txt'), [upload, backup], { field: 'f' });
    expect(c.root.endsWith('upload')).toBe(true);
  });

  it('refuses a path outside, naming the field, the path and the allowed roots', async () => {
    const err = await failure(confine(join(outside, 'secret.txt'), roots, { field: 'source_dir' }));
    expect(err).toMatchObject({ name: 'PathNotAllowedError', code: 'JOBD_DO_NOT_RETRY' });
    expect(err.message).toContain('source_dir');
    expect(err.message).toContain(join(outside, 'secret.txt'));
    expect(err.message).toContain(`upload=${upload}`);
    expect(err.message).toContain(`backup=${backup}`);
  });

  it('follows symlinks: a link inside that points outside is refused, also as an ancestor of a new path', async () => {
    await symlink(outside, join(upload, 'escape'));
    await expect(confine(join(upload, 'escape', 'secret.txt'), roots, { field: 'f' })).rejects.toThrow(
      /resolves to/,
    );
    await expect(
      confine(join(upload, 'escape', 'new', 'out.tar'), roots, { field: 'output_path', forWrite: true }),
    ).rejects.toMatchObject({
      name: 'PathNotAllowedError',
    });
    await rm(join(upload, 'escape'));
  });

  it('a path that does not exist yet is checked through its nearest existing ancestor', async () => {
    const c = await confine(join(upload, 'x', 'y', 'z.tar'), roots, { field: 'out', forWrite: true });
    expect(c.exists).toBe(false);
    expect(c.real.endsWith(join('upload', 'x', 'y', 'z.tar'))).toBe(true);
  });

  it('refuses relative paths, ".." segments and a missing path that must exist', async () => {
    await expect(confine('upload/a.txt', roots, { field: 'f' })).rejects.toThrow(/absolute/);
    await expect(confine(`${upload}/../upload/a.txt`, roots, { field: 'f' })).rejects.toThrow(
      /"\.\." segments/,
    );
    await expect(
      confine(join(upload, 'nope'), roots, { field: 'zip_file', mustExist: true }),
    ).rejects.toMatchObject({
      name: 'DataInputError',
      message: expect.stringContaining('does not exist'),
    });
  });

  it('refuses the wrong kind', async () => {
    await expect(confine(join(upload, 'a.txt'), roots, { field: 'source_dir', kind: 'dir' })).rejects.toThrow(
      /must be a directory/,
    );
  });

  it('recheck refuses a symlink swapped in after the first check, even for a path that did not exist', async () => {
    const target = join(upload, 'ds1');
    await mkdir(target);
    const first = await confine(join(target, 'out'), roots, { field: 'output_path', forWrite: true });
    // Swap the directory for a symlink to outside, as an attacker with write access to upload might.
    await rename(target, join(upload, 'ds1.moved'));
    await symlink(outside, target);
    const err = await failure(recheck(first, roots));
    expect(err).toMatchObject({ name: 'PathNotAllowedError' });
    expect(err.message).toContain('output_path');
    await rm(target);
    // A symlink that stays inside but changes where the write lands is refused too.
    await symlink(join(upload, 'ds1.moved'), target);
    await expect(recheck(first, roots)).rejects.toThrow(/changed while the job ran/);
    await rm(target);
    await rename(join(upload, 'ds1.moved'), target);
    await expect(recheck(first, roots)).resolves.toMatchObject({ real: first.real });
  });
});
