import { randomBytes } from 'node:crypto';
import { mkdir, open, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBackup } from '../../src/jobs/data/lib/backup.js';
import { validateDataset, type ValidateResult } from '../../src/jobs/data/lib/validate.js';
import { gzipOf, tarOf, zipOf, zstdOf } from '../fixtures/data/archives.js';
import { hdf5, mrc, tiff, zarray } from '../fixtures/data/formats.js';
import { allGone, failure, isAlive, recordingContext, runCoreChild, tempDir } from './helpers.js';

let base: { dir: string; cleanup(): Promise<void> };
let converted: string;
let env: { dataDirs: Record<string, string> };
let ds: string;

beforeEach(async () => {
  base = await tempDir('validate');
  converted = join(base.dir, 'converted');
  env = { dataDirs: { converted, backup: join(base.dir, 'backup') } };
  await mkdir(env.dataDirs.backup!, { recursive: true });
  ds = join(converted, 'ds');
  await mkdir(join(ds, 'img.zarr'), { recursive: true });
  await writeFile(join(ds, 'a.tif'), tiff());
  await writeFile(join(ds, 'vol.mrc'), mrc(8, 8, 4));
  await writeFile(join(ds, 'data.h5'), hdf5());
  await writeFile(join(ds, 'img.zarr', '.zarray'), zarray);
  await writeFile(join(ds, 'notes.txt'), 'notes');
  await writeFile(join(ds, 'raw.zip'), await zipOf([{ name: 'r/x.bin', content: randomBytes(20_000) }]));
  await writeFile(
    join(ds, 'raw.tar.gz'),
    gzipOf(await tarOf([{ name: 'y.bin', type: 'file', content: randomBytes(20_000) }])),
  );
});
afterEach(() => base.cleanup());

describe('data_validation', () => {
  it('a good dataset with its manifest is valid', async () => {
    await createBackup({ source_dir: ds }, recordingContext(), env);
    const res = await validateDataset({ dataset_dir: ds }, recordingContext(), env);
    expect(res).toMatchObject({
      valid: true,
      files: 7,
      archives_checked: 2,
      formats_checked: 4,
      problems: [],
    });
    expect(res.manifest).toMatch(/manifest\.json$/);
  });

  it('lists every problem and fails non-retryably with the list attached', async () => {
    await createBackup({ source_dir: ds }, recordingContext(), env);
    await rm(join(ds, 'notes.txt'));
    await writeFile(join(ds, 'new.txt'), 'x');
    // Same size, other bytes, mtime moved: found by hash.
    const fh = await open(join(ds, 'vol.mrc'), 'r+');
    await fh.write(Buffer.from([1, 2, 3]), 0, 3, 2000);
    await fh.close();
    await utimes(join(ds, 'vol.mrc'), new Date(), new Date(Date.now() + 5000));
    await truncate(join(ds, 'a.tif'), 12); // IFD cut off
    await writeFile(join(ds, 'img.zarr', '.zarray'), '{"shape": [1]');
    const zip = await zipOf([{ name: 'z.bin', content: randomBytes(5000), mode: 0o100644 }]);
    zip[60] = zip[60]! ^ 0xff; // inside the stored data: a CRC or inflate error
    await writeFile(join(ds, 'bad.zip'), zip);
    const tgz = gzipOf(await tarOf([{ name: 'q', type: 'file', content: randomBytes(50_000) }]));
    await writeFile(join(ds, 'cut.tar.gz'), tgz.subarray(0, tgz.length >> 1));
    await writeFile(join(ds, 'bad.h5'), 'not hdf5');

    const err = await failure(validateDataset({ dataset_dir: ds }, recordingContext(), env));
    expect(err).toMatchObject({ name: 'DatasetInvalidError', code: 'JOBD_DO_NOT_RETRY' });
    const details = err.details as ValidateResult;
    const kinds = details.problems.map((p) => `${p.kind}:${p.path}`).sort();
    expect(kinds).toEqual(
      [
        'archive:bad.zip',
        'archive:cut.tar.gz',
        'changed:a.tif',
        'changed:vol.mrc',
        'extra:bad.h5',
        'extra:bad.zip',
        'extra:cut.tar.gz',
        'extra:new.txt',
        'format:a.tif',
        'format:bad.h5',
        'format:img.zarr/.zarray',
        'missing:notes.txt',
        'changed:img.zarr/.zarray',
      ].sort(),
    );
    expect(err.message).toContain('13 problem(s)');
  });

  it('checks MRC sizes against the header, without a manifest', async () => {
    await writeFile(join(ds, 'short.mrc'), mrc(8, 8, 4).subarray(0, 1500));
    const err = await failure(validateDataset({ dataset_dir: ds }, recordingContext(), env));
    expect((err.details as ValidateResult).problems).toEqual([
      {
        kind: 'format',
        path: 'short.mrc',
        detail: expect.stringContaining('needs 2048 bytes with the header, the file has 1500'),
      },
    ]);
  });

  it('a cancel stops the zstd testing an archive; a SIGKILLed run is simply run again', async () => {
    const entries = Array.from({ length: 30 }, (_, i) => ({
      name: `p${i}`,
      type: 'file' as const,
      content: randomBytes(2 << 20),
    }));
    await writeFile(join(ds, 'big.tar.zst'), zstdOf(await tarOf(entries)));
    const ctx = recordingContext();
    let pid = 0;
    const log = ctx.log;
    // Cancel the moment zstd is started: deterministic however fast the machine is.
    ctx.log = (msg, extra) => {
      log(msg, extra);
      if (msg === 'zstd: started') {
        pid = extra!.pid as number;
        ctx.controller.abort(new Error('cancelled'));
      }
    };
    const run = validateDataset({ dataset_dir: ds }, ctx, env);
    await expect(run).rejects.toMatchObject({ name: 'ToolAbortedError' });
    expect(pid).toBeGreaterThan(0);
    expect(await isAlive(pid)).toBe(false);

    const child = runCoreChild('validate', 'validateDataset', { dataset_dir: ds }, env);
    await child.waitEvent((e) => typeof e.progress === 'number', 'validation under way');
    child.proc.kill('SIGKILL');
    await child.exited;
    await allGone([child.proc.pid!], 'the killed run');
    const res = await validateDataset({ dataset_dir: ds }, recordingContext(), env);
    expect(res.valid).toBe(true);
  });
});
