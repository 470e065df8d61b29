import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, redactUri } from '../../src/logging.js';
import { protectUri, redact, uriSecrets } from '../../src/redact.js';

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

describe('redact: any shape of connection string, any option that carries a secret', () => {
  const pw = 'Pw-71x';
  const shapes: [string, string][] = [
    [`mongodb//admin:${pw}@host`, 'mongodb//***@host'],
    [`mongodb:/admin:${pw}@h`, 'mongodb:/***@h'],
    [`admin:${pw}@host:27017`, '***@host:27017'],
    [`mongodb+srv://u:${pw}@cluster0.example.net/jobd`, 'mongodb+srv://***@cluster0.example.net/jobd'],
    [`mongodb://u:p%40ss%2F${pw}@h/db`, 'mongodb://***@h/db'],
    [`mongodb://u:p@ss/w:rd${pw}@h1,h2/db?w=1`, 'mongodb://***@h1,h2/db?w=1'],
    [`uri=admin:${pw}@host`, 'uri=***@host'],
    [
      `mongodb://h/?tls=true&tlsCertificateKeyFilePassword=${pw}&w=1`,
      'mongodb://h/?tls=true&tlsCertificateKeyFilePassword=***&w=1',
    ],
    [`mongodb://h/?password=${pw}`, 'mongodb://h/?password=***'],
    [`mongodb://h/?sslPEMKeyPassword=${pw}`, 'mongodb://h/?sslPEMKeyPassword=***'],
    [`mongodb://h/?proxyUsername=u&proxyPassword=${pw}`, 'mongodb://h/?proxyUsername=u&proxyPassword=***'],
    [
      `mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:${pw},SERVICE_NAME:s`,
      'mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***',
    ],
    [`token AWS_SESSION_TOKEN%3A${pw}`, 'token AWS_SESSION_TOKEN%3A***'],
    [`{"password":"${pw}","proxyPassword":"a\\"b${pw}"}`, '{"password":"***","proxyPassword":"***"}'],
    [`{ sslPEMKeyPassword: '${pw}' }`, "{ sslPEMKeyPassword: '***' }"],
    [
      `cannot connect to mongodb://h/?proxyPassword=${pw}: connect ECONNREFUSED`,
      'cannot connect to mongodb://h/?proxyPassword=***: connect ECONNREFUSED',
    ],
  ];
  for (const [given, expected] of shapes) {
    it(given, () => {
      expect(redact(given)).toBe(expected);
      expect(redact(`error: "${given}" failed`)).not.toContain(pw);
    });
  }

  it('inside a JSON log line, also as JSON within a JSON string', () => {
    const line = JSON.stringify({
      msg: `bad ${JSON.stringify({ tlsCertificateKeyFilePassword: pw, n: 1 })} at mongodb://a:b"${pw}@h/`,
      uri: `mongodb//a:${pw}@h`,
    });
    const out = redact(line);
    expect(out).not.toContain(pw);
    expect(() => JSON.parse(out) as unknown).not.toThrow();
  });

  it('leaves text without credentials alone', () => {
    for (const text of [
      'mongodb://127.0.0.1:27117/?directConnection=true',
      'write to alice@example.org',
      'at load (/srv/app/node_modules/@scope/pkg/index.js:10:3)',
      '{"leaseToken":"a1b2","resumeToken":{"_data":"82"},"msg":"claimed"}',
      'embedded',
    ]) {
      expect(redact(text)).toBe(text);
    }
  });

  it('takes linear time on long lines', () => {
    const t0 = performance.now();
    redact(`${'a'.repeat(300_000)}=x@y: ${'b'.repeat(300_000)} password=1 ${'c'.repeat(300_000)}:`);
    // A backtracking pattern takes minutes here; linear scanning takes milliseconds.
    expect(performance.now() - t0).toBeLessThan(5_000);
  });

  it('a remembered URI hides its password and secret options in any form, anywhere', () => {
    const raw = 'S3:cr/t@Q9';
    const encoded = encodeURIComponent(raw);
    const uri = `mongodb://admin:${encoded}@db.example.net/?tlsCertificateKeyFilePassword=k3y-${pw}&authMechanismProperties=AWS_SESSION_TOKEN%3Atok-${pw}`;
    expect(uriSecrets(uri)).toEqual(
      expect.arrayContaining([encoded, `k3y-${pw}`, `AWS_SESSION_TOKEN%3Atok-${pw}`, `tok-${pw}`]),
    );
    protectUri(uri);
    const text = redact(
      `decoded ${raw}, encoded ${encoded}, json ${JSON.stringify(raw)}, k3y-${pw} tok-${pw}`,
    );
    for (const secret of [raw, encoded, `k3y-${pw}`, `tok-${pw}`, 'cr/t@Q9'])
      expect(text).not.toContain(secret);
  });

  it('finds the password of a malformed URI too', () => {
    expect(uriSecrets('mongodb//admin:Pw1@host')).toEqual(['Pw1']);
    expect(uriSecrets('mongodb:/admin:Pw1@h')).toEqual(['Pw1']);
    expect(uriSecrets('admin:Pw1@host:27017')).toEqual(['Pw1']);
    expect(uriSecrets('mongodb://admin:p@ss:w/rd@h/?w=1')).toEqual(['p@ss:w/rd']);
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
    log.info({ uri: `mongodb//admin:${secret}@db` }, 'malformed');
    log.info(
      { options: { tlsCertificateKeyFilePassword: secret } },
      `tls mongodb://h/?tlsCertificateKeyFilePassword=${secret}`,
    );
    log.error({ err: new Error('outer', { cause: new Error(`inner admin:${secret}@db:27017`) }) }, 'cause');
    const text = out.text();
    expect(text).not.toContain(secret);
    expect(text).toContain('mongodb://***@db.example.net:27017/jobd');
    const lines = text
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(10);
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
