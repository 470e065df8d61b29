import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileUpload } from '../../src/jobs/data/lib/upload.js';
import { makeDataset } from '../fixtures/data/archives.js';
import {
  allGone,
  expectSameFile,
  failure,
  freePort,
  isAlive,
  recordingContext,
  runCoreChild,
  tempDir,
  type RecordingContext,
} from './helpers.js';
import { PASSWORD, startRcloneServer, unreachableConfig, type RcloneServer } from './rcloneServe.js';

let base: { dir: string; cleanup(): Promise<void> };
let upload: string;
let auth: string;
let sftpRoot: string;
let davRoot: string;
let sftp: RcloneServer;
let dav: RcloneServer;
let sftpConf: string;
let davConf: string;
let names: string[];
let ds: string;
let env: { dataDirs: Record<string, string> };
const captured: string[] = [];

function capture(ctx: RecordingContext): RecordingContext {
  captured.push(JSON.stringify(ctx.logs), JSON.stringify(ctx.progressed));
  return ctx;
}
async function captureFailure(p: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  const err = await failure(p);
  captured.push(err.message, String(err.stack), JSON.stringify(err));
  return err;
}

beforeAll(async () => {
  base = await tempDir('upload');
  upload = join(base.dir, 'upload');
  auth = join(base.dir, 'auth');
  sftpRoot = join(base.dir, 'sftp');
  davRoot = join(base.dir, 'dav');
  await Promise.all([upload, auth, sftpRoot, davRoot].map((d) => mkdir(d, { recursive: true })));
  ds = join(upload, 'ds');
  names = await makeDataset(ds, 10, 30_000);
  await writeFile(join(upload, 'big.bin'), randomBytes(6 << 20));
  env = { dataDirs: { upload, auth } };
  [sftp, dav] = await Promise.all([
    startRcloneServer('sftp', sftpRoot),
    startRcloneServer('webdav', davRoot),
  ]);
  sftpConf = await sftp.writeConfig(join(auth, 'sftp.conf'));
  davConf = await dav.writeConfig(join(auth, 'dav.conf'));
});
afterAll(async () => {
  await Promise.all([sftp?.stop(), dav?.stop()]);
  await base?.cleanup();
});

describe('file_upload', () => {
  it('uploads a directory over sftp and verifies it by hash; a re-run uploads only what is missing', async () => {
    const ctx = capture(recordingContext());
    const res = await fileUpload({ files: ds, destination: 'lab:in/ds', config: sftpConf }, ctx, env);
    expect(res).toMatchObject({
      files: names.length,
      bytes: 10 * 30_000 + 15,
      transferred_files: names.length,
      verified: true,
      verify_method: 'hash',
    });
    for (const n of names) await expectSameFile(join(ds, n), join(sftpRoot, 'in/ds', n));
    expect(ctx.progressed.at(-1)!.percent).toBe(100);

    await rm(join(sftpRoot, 'in/ds', names[3]!));
    const again = await fileUpload(
      { files: ds, destination: 'lab:in/ds', config: sftpConf },
      capture(recordingContext()),
      env,
    );
    expect(again).toMatchObject({ transferred_files: 1, transferred_bytes: 30_000, verified: true });
  });

  it('uploads a list of files (legacy files + destination) over webdav, verified by download', async () => {
    const files = [join(ds, names[0]!), join(ds, names[5]!), join(ds, 'README.txt')];
    const res = await fileUpload(
      { files, destination: 'lab:list', config: davConf },
      capture(recordingContext()),
      env,
    );
    expect(res).toMatchObject({ files: 3, transferred_files: 3, verified: true, verify_method: 'download' });
    await expectSameFile(files[1]!, join(davRoot, 'list', names[5]!));
    await expectSameFile(files[2]!, join(davRoot, 'list', 'README.txt'));
    const hash = await captureFailure(
      fileUpload(
        { files, destination: 'lab:list', config: davConf, verify: 'hash' },
        recordingContext(),
        env,
      ),
    );
    expect(hash.message).toContain('has no hash in common with local files');
  });

  it('a remote copy that differs after upload fails verification, retryably, naming the file', async () => {
    await fileUpload({ files: ds, destination: 'lab:v', config: davConf }, capture(recordingContext()), env);
    // Same size and a newer mtime on the remote: copy skips it, the byte compare does not.
    const victim = join(davRoot, 'v', names[2]!);
    await writeFile(victim, randomBytes(30_000));
    const err = await captureFailure(
      fileUpload(
        { files: ds, destination: 'lab:v', config: davConf, options: { retries: 1 } },
        recordingContext(),
        env,
      ),
    );
    expect(err).toMatchObject({
      name: 'UploadNotVerifiedError',
      retryable: true,
      code: 'JOBD_UPLOAD_NOT_VERIFIED',
    });
    expect(err.message).toContain(`${names[2]!}: differs from the source`);
    expect(err.details).toEqual({ differences: [{ path: names[2], problem: 'differs from the source' }] });
  });

  it('failures: a missing file is not retryable, an unreachable remote is', async () => {
    const missing = await captureFailure(
      fileUpload(
        { files: [join(upload, 'nope.bin')], destination: 'lab:x', config: davConf },
        recordingContext(),
        env,
      ),
    );
    expect(missing).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    expect(missing.message).toContain('files: ');
    const closed = await unreachableConfig(auth, await freePort());
    const down = await captureFailure(
      fileUpload(
        { files: ds, destination: 'lab:x', config: closed, options: { retries: 1 } },
        recordingContext(),
        env,
      ),
    );
    expect(down).toMatchObject({ name: 'ToolFailedError', retryable: true });
    const outside = await captureFailure(
      fileUpload({ files: '/etc/passwd', destination: 'lab:x', config: davConf }, recordingContext(), env),
    );
    expect(outside).toMatchObject({ name: 'PathNotAllowedError', code: 'JOBD_DO_NOT_RETRY' });
  });

  it('a cancel mid-upload stops rclone (its pid is gone)', async () => {
    const ctx = capture(recordingContext());
    let pid = 0;
    const log = ctx.log;
    ctx.log = (msg, extra) => {
      log(msg, extra);
      if (msg === 'rclone: started') pid = extra!.pid as number;
    };
    const progress = ctx.progress;
    ctx.progress = (percent, message) => {
      progress(percent, message);
      if (message?.includes(' bytes, ') && !ctx.signal.aborted) ctx.controller.abort(new Error('cancelled'));
    };
    const err = await captureFailure(
      fileUpload(
        {
          files: join(upload, 'big.bin'),
          destination: 'lab:c',
          config: davConf,
          options: { bandwidth_limit: '256K' },
        },
        ctx,
        env,
      ),
    );
    expect(err).toMatchObject({ name: 'ToolAbortedError' });
    expect(pid).toBeGreaterThan(0);
    expect(await isAlive(pid)).toBe(false);
  });

  it('a SIGKILLed upload takes rclone with it; the re-run resumes and verifies', async () => {
    const input = {
      files: [join(upload, 'big.bin')],
      destination: 'lab:k',
      config: sftpConf,
      options: { bandwidth_limit: '512K' },
    };
    const child = runCoreChild('upload', 'fileUpload', input, env);
    const started = await child.waitEvent((e) => e.log === 'rclone: started', 'rclone started by the child');
    await child.waitEvent(
      (e) => typeof e.message === 'string' && e.message.includes(' bytes, '),
      'upload under way',
    );
    child.proc.kill('SIGKILL');
    await child.exited;
    await allGone([child.proc.pid!, (started.extra as { pid: number }).pid], 'the killed run and its rclone');
    captured.push(child.output());
    const res = await fileUpload({ ...input, options: {} }, capture(recordingContext()), env);
    expect(res).toMatchObject({ files: 1, verified: true, verify_method: 'hash' });
    await expectSameFile(join(upload, 'big.bin'), join(sftpRoot, 'k', 'big.bin'));
  });

  it('credentials never appear in anything the cores said', () => {
    const all = captured.join('\n');
    expect(all.length).toBeGreaterThan(1000);
    for (const secret of [PASSWORD, sftp.obscured, dav.obscured]) expect(all).not.toContain(secret);
  });
});
