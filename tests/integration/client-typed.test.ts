/** The library refuses bad inputs before anything is written, as jobctl does. */
import { mkdirSync, mkdtempSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JobdClient } from '../../src/client.js';
import { ValidationError } from '../../src/errors.js';
import { fixtureHandler, testConfig } from './daemon-helpers.js';
import { openStoreFixture, type StoreFixture } from './store-helpers.js';

describe('library: typed inputs', () => {
  let f: StoreFixture;
  let client: JobdClient | null = null;
  beforeEach(async () => {
    f = await openStoreFixture('client_typed');
  });
  afterEach(async () => {
    await client?.close();
    client = null;
    await f.close();
  });

  it('enqueue and enqueueMany refuse a bad field or a path outside the data dirs, and write nothing', async () => {
    const base = realpathSync(mkdtempSync(join(tmpdir(), 'jobd-client-typed-')));
    const dataDirs = { raw: join(base, 'raw'), processed: join(base, 'processed') };
    for (const d of Object.values(dataDirs)) mkdirSync(d);
    const config = testConfig(f, {
      jobTypes: { copy_file: { handler: fixtureHandler('typed.mjs') } },
      dataDirs,
    });
    client = await JobdClient.connect({ ...config, mongoUri: f.t.uri, database: f.t.dbName });

    const one = await client.enqueue('sleep', { ms: 'soon' }).catch((e: unknown) => e);
    expect(one).toBeInstanceOf(ValidationError);
    expect((one as Error).message).toContain('job type "sleep": params.ms = "soon" is not allowed');

    const outside = await client
      .enqueue('copy_file', { source: '/etc/passwd', target: join(dataDirs.processed, 'x') })
      .catch((e: unknown) => e);
    expect(outside).toBeInstanceOf(ValidationError);
    expect((outside as Error).message).toContain('params.source = "/etc/passwd" is not allowed');

    const many = await client
      .enqueueMany([
        { type: 'echo', params: { fine: true } },
        { type: 'fail', params: { doNotRetry: 'yes' } },
      ])
      .catch((e: unknown) => e);
    expect((many as Error).message).toContain(
      'jobs[1]: job type "fail": params.doNotRetry = "yes" is not allowed',
    );
    expect(await f.store.jobs.countDocuments({})).toBe(0);

    const { job } = await client.enqueue('copy_file', {
      input_path: join(dataDirs.raw, 'a.txt'),
      target: join(dataDirs.processed, 'a.txt'),
    });
    // Stored as given: the daemon that runs it parses (and maps legacy names) again.
    expect(job.params).toEqual({
      input_path: join(dataDirs.raw, 'a.txt'),
      target: join(dataDirs.processed, 'a.txt'),
    });
  });
});
