import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, redactUri } from '../../src/logging.js';

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join('') };
}

describe('redactUri', () => {
  it('hides user:pass@ and user@', () => {
    expect(redactUri('mongodb://alice:s3cret@db1:27017,db2/jobd?authSource=admin')).toBe(
      'mongodb://***@db1:27017,db2/jobd?authSource=admin',
    );
    expect(redactUri('mongodb+srv://bob@cluster.example.net/x')).toBe(
      'mongodb+srv://***@cluster.example.net/x',
    );
  });

  it('hides password-style query parameters', () => {
    expect(redactUri('mongodb://db/?authSource=admin&password=s3cret&w=1')).toBe(
      'mongodb://db/?authSource=admin&password=***&w=1',
    );
  });

  it('redacts every URI inside free text and leaves other text alone', () => {
    expect(redactUri('failed: mongodb://a:b@h1/ then mongodb://c:d@h2/')).toBe(
      'failed: mongodb://***@h1/ then mongodb://***@h2/',
    );
    expect(redactUri('mongodb://127.0.0.1:27117/?directConnection=true')).toBe(
      'mongodb://127.0.0.1:27117/?directConnection=true',
    );
    expect(redactUri('embedded')).toBe('embedded');
  });
});

describe('logger', () => {
  it('never writes credentials, whatever field or message carries them', () => {
    const out = capture();
    const log = createLogger({ level: 'trace' }, out.stream);
    const secret = 'hunter2-secret';
    const uri = `mongodb://admin:${secret}@db.example.net:27017/jobd?authSource=admin`;
    log.info({ uri }, 'connecting');
    log.info({ mongoUri: uri, nested: { uri, deeper: { uri } } }, 'nested');
    log.info({ password: secret, config: { password: secret } }, 'password fields');
    log.warn(`message with ${uri}`);
    log.info('interpolated %s', uri);
    log.error({ err: new Error(`cannot connect to ${uri}`) }, 'error object');
    log.child({ uri }).info('child binding');
    const text = out.text();
    expect(text).not.toContain(secret);
    expect(text).toContain('mongodb://***@db.example.net:27017/jobd');
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(7);
    expect(lines[0]).toMatchObject({ level: 'info', msg: 'connecting' });
  });

  it('honours the level', () => {
    const out = capture();
    const log = createLogger({ level: 'warn' }, out.stream);
    log.info('quiet');
    log.warn('loud');
    expect(out.text()).not.toContain('quiet');
    expect(out.text()).toContain('loud');
  });
});
