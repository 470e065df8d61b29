import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSecrets, reveal } from '../../src/jobs/data/lib/rcloneConfig.js';
import { googleSync, parseSource, remoteSync } from '../../src/jobs/data/lib/remoteSync.js';
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
let sync: string;
let auth: string;
let remoteRoot: string;
let server: RcloneServer;
let config: string;
let names: string[];
let env: { dataDirs: Record<string, string> };
/** Everything the cores said in these tests, to look for credentials in. */
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
  base = await tempDir('rclone');
  sync = join(base.dir, 'sync');
  auth = join(base.dir, 'auth');
  remoteRoot = join(base.dir, 'remote');
  await Promise.all([sync, auth, remoteRoot].map((d) => mkdir(d, { recursive: true })));
  names = await makeDataset(join(remoteRoot, 'ds'), 12, 40_000);
  // Copied throttled by the cancel and crash tests (everything but ds/).
  await writeFile(join(remoteRoot, 'big.bin'), randomBytes(6 << 20));
  env = { dataDirs: { sync, auth } };
  server = await startRcloneServer('webdav', remoteRoot);
  config = await server.writeConfig(join(auth, 'lab.conf'));
});
afterAll(async () => {
  await server?.stop();
  await base?.cleanup();
});

describe('remote_sync and google_sync', () => {
  it('copies a remote folder into a data dir, with progress from the JSON stats; a re-run copies nothing', async () => {
    const dest = join(sync, 'copy1');
    const ctx = capture(recordingContext());
    const res = await remoteSync({ source: 'lab:ds', destination: dest, config }, ctx, env);
    for (const n of names) await expectSameFile(join(remoteRoot, 'ds', n), join(dest, n));
    expect(res).toMatchObject({
      mode: 'copy',
      config_from: 'input',
      files_transferred: names.length,
      bytes_transferred: 12 * 40_000 + 15,
    });
    expect(ctx.progressed.at(-1)).toEqual({ percent: 100, message: expect.stringContaining('13 files') });
    const again = await remoteSync(
      { source: 'lab:ds', destination: dest, config },
      capture(recordingContext()),
      env,
    );
    expect(again).toMatchObject({ files_transferred: 0, bytes_transferred: 0, checks: names.length });
  });

  it('sync mode removes what the source no longer has; copy mode keeps it', async () => {
    const dest = join(sync, 'mirror');
    await mkdir(dest, { recursive: true });
    await writeFile(join(dest, 'stale.txt'), 'old');
    await remoteSync({ source: 'lab:ds', destination: dest, config }, capture(recordingContext()), env);
    expect(await readdir(dest)).toContain('stale.txt');
    const res = await remoteSync(
      { source: 'lab:ds', destination: dest, config, mode: 'sync' },
      capture(recordingContext()),
      env,
    );
    expect(res.deletes).toBe(1);
    expect(await readdir(dest)).not.toContain('stale.txt');
  });

  it('google_sync takes the legacy parameters: user_email picks the credentials in the auth dir', async () => {
    await server.writeConfig(join(auth, 'ann@lab.org.conf'), 'drive-ish');
    const dest = join(sync, 'uuid-1');
    const res = await googleSync(
      { user_email: 'ann@lab.org', input_dir: dest, data_url: 'rclone:drive-ish:ds/run0' },
      capture(recordingContext()),
      env,
    );
    expect(res).toMatchObject({ config_from: 'auth', source: 'rclone:drive-ish:ds/run0' });
    expect((await readdir(join(dest, 'sub0'))).length).toBeGreaterThan(0);
    const err = await captureFailure(
      googleSync(
        { user_email: 'bob@lab.org', input_dir: dest, data_url: 'rclone:lab:ds' },
        recordingContext(),
        env,
      ),
    );
    expect(err).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    expect(err.message).toContain('no rclone credentials for "bob@lab.org"');
  });

  it('reads Google Drive folder links, and refuses what it cannot use', async () => {
    expect(parseSource('https://drive.google.com/drive/folders/1AbC-d_E?usp=sharing', 'data_url')).toEqual({
      kind: 'drive',
      folderId: '1AbC-d_E',
    });
    expect(parseSource('https://drive.google.com/open?id=XyZ', 'data_url')).toEqual({
      kind: 'drive',
      folderId: 'XyZ',
    });
    expect(() => parseSource('https://drive.google.com/file/d/abc/view', 'data_url')).toThrow(
      /not to a folder/,
    );
    expect(() => parseSource('ftp://x/y', 'source')).toThrow(/is not a source/);
    expect(() => parseSource('lab:../etc', 'source')).toThrow(/"\.\." segments/);
    // The config holds no drive remote: the link cannot be followed.
    const err = await captureFailure(
      googleSync(
        { config, input_dir: join(sync, 'g'), data_url: 'https://drive.google.com/drive/folders/abc' },
        recordingContext(),
        env,
      ),
    );
    expect(err.message).toMatch(/needs the config's drive remote; the config \(from input\) has none/);
  });

  it('failures: an unreachable remote is retryable; a missing folder, an unknown remote, bad credentials are not', async () => {
    const dest = join(sync, 'fail');
    const closed = await unreachableConfig(auth, await freePort());
    const down = await captureFailure(
      remoteSync(
        { source: 'lab:ds', destination: dest, config: closed, options: { retries: 1 } },
        recordingContext(),
        env,
      ),
    );
    expect(down).toMatchObject({ name: 'ToolFailedError', retryable: true, code: 'JOBD_TOOL_FAILED' });
    expect(down.message).toContain('connection refused');

    const missing = await captureFailure(
      remoteSync(
        { source: 'lab:no-such', destination: dest, config, options: { retries: 1 } },
        recordingContext(),
        env,
      ),
    );
    expect(missing).toMatchObject({ retryable: false, code: 'JOBD_DO_NOT_RETRY', exitCode: 3 });
    expect(missing.message).toContain('directory not found');

    const unknown = await captureFailure(
      remoteSync({ source: 'elsewhere:ds', destination: dest, config }, recordingContext(), env),
    );
    expect(unknown).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });
    expect(unknown.message).toContain(
      'the remote "elsewhere" is not defined in the rclone config (from input); defined: lab',
    );

    const local = await captureFailure(
      remoteSync(
        { source: `file://${join(sync, 'absent')}`, destination: dest, config },
        recordingContext(),
        env,
      ),
    );
    expect(local).toMatchObject({ name: 'DataInputError', code: 'JOBD_DO_NOT_RETRY' });

    const wrong = join(auth, 'wrong.conf');
    const wrongPw = execFileSync('rclone', ['obscure', 'not-the-password-123'], { encoding: 'utf8' }).trim();
    await writeFile(wrong, server.section('lab').replace(server.obscured, wrongPw));
    const denied = await captureFailure(
      remoteSync(
        { source: 'lab:ds', destination: dest, config: wrong, options: { retries: 1 } },
        recordingContext(),
        env,
      ),
    );
    expect(denied).toMatchObject({ retryable: false, code: 'JOBD_DO_NOT_RETRY' });
    expect(denied.message).not.toContain('not-the-password-123');
    expect(denied.message).not.toContain(wrongPw);
  });

  it('a cancel mid-copy stops rclone (its pid is gone)', async () => {
    const ctx = capture(recordingContext());
    let pid = 0;
    const log = ctx.log;
    ctx.log = (msg, extra) => {
      log(msg, extra);
      if (msg === 'rclone: started') pid = extra!.pid as number;
    };
    const progress = ctx.progress;
    // Cancel on the first progress from rclone's stats: mid-copy on any machine (the copy is throttled).
    ctx.progress = (percent, message) => {
      progress(percent, message);
      if (message?.includes(' bytes, ') && !ctx.signal.aborted) ctx.controller.abort(new Error('cancelled'));
    };
    const err = await captureFailure(
      remoteSync(
        {
          source: 'lab:',
          destination: join(sync, 'cancelled'),
          config,
          options: { bandwidth_limit: '256K', exclude: ['ds/**'] },
        },
        ctx,
        env,
      ),
    );
    expect(err).toMatchObject({ name: 'ToolAbortedError' });
    expect(pid).toBeGreaterThan(0);
    expect(await isAlive(pid)).toBe(false);
  });

  it('a SIGKILLed run takes rclone with it; the re-run completes the copy', async () => {
    const dest = join(sync, 'killed');
    const child = runCoreChild(
      'remoteSync',
      'remoteSync',
      { source: 'lab:', destination: dest, config, options: { bandwidth_limit: '512K', exclude: ['ds/**'] } },
      env,
    );
    const started = await child.waitEvent((e) => e.log === 'rclone: started', 'rclone started by the child');
    const rclonePid = (started.extra as { pid: number }).pid;
    await child.waitEvent(
      (e) => typeof e.message === 'string' && e.message.includes(' bytes, '),
      'copy under way',
    );
    child.proc.kill('SIGKILL');
    await child.exited;
    await allGone([child.proc.pid!, rclonePid], 'the killed run and its rclone');
    captured.push(child.output());
    const res = await remoteSync(
      { source: 'lab:', destination: dest, config, options: { exclude: ['ds/**'] } },
      capture(recordingContext()),
      env,
    );
    expect(res.files_transferred).toBeLessThanOrEqual(1);
    await expectSameFile(join(remoteRoot, 'big.bin'), join(dest, 'big.bin'));
  });

  it('credentials never appear in anything the cores said', () => {
    expect(reveal(server.obscured)).toBe(PASSWORD);
    expect(configSecrets(server.section('x'))).toEqual(expect.arrayContaining([server.obscured, PASSWORD]));
    const drive = configSecrets(
      '[g]\ntype = drive\nclient_secret = cs-123456\ntoken = {"access_token":"ya29.a0AfH6SM","refresh_token":"1//0gLongRefresh","expiry":"2030-01-01T00:00:00Z"}\nuse_trash = true\n',
    );
    expect(drive).toEqual(expect.arrayContaining(['cs-123456', 'ya29.a0AfH6SM', '1//0gLongRefresh']));
    expect(drive).not.toContain('true');
    const all = captured.join('\n');
    expect(all.length).toBeGreaterThan(1000);
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain(server.obscured);
  });
});
