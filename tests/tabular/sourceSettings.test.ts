/**
 * The settings' tabular.sources: validated with messages naming key, value and what is allowed, and
 * their secrets hidden in every message, the settings' own included.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSettings } from '../../src/config/settings.js';
import { redact } from '../../src/redact.js';

const dir = mkdtempSync(join(tmpdir(), 'jobd-tab-settings-'));
function load(tabular: unknown) {
  const file = join(dir, `s${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ tabular }));
  return loadSettings({ file, env: {} });
}
function problem(tabular: unknown): string {
  try {
    load(tabular);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected the settings to be refused');
}

describe('tabular.sources settings', () => {
  it('resolves http and mongodb sources', () => {
    const c = load({
      sources: {
        api: { kind: 'http', baseUrl: 'https://api.example.org/v1/', headers: { 'X-Token': 'tkn-abcdef-1' } },
        db: { kind: 'mongodb', uri: 'mongodb://u:dbpass-998@db1/shop' },
      },
    });
    expect(c.tabular?.sources).toEqual({
      api: {
        kind: 'http',
        baseUrl: 'https://api.example.org/v1/',
        headers: { 'X-Token': 'tkn-abcdef-1' },
        query: {},
      },
      db: { kind: 'mongodb', uri: 'mongodb://u:dbpass-998@db1/shop' },
    });
    // Loaded secrets are hidden wherever they appear from now on.
    expect(redact('got tkn-abcdef-1 and dbpass-998')).toBe('got *** and ***');
  });

  it('refuses mistakes, naming the key and what is allowed, without showing secrets', () => {
    expect(problem({ sources: { api: { kind: 'http', baseUrl: 'ftp://x' } } })).toMatch(
      /tabular\.sources\.api\.baseUrl = "ftp:\/\/x" is not allowed: must be an http:\/\/ or https:\/\/ URL/,
    );
    expect(problem({ sources: { api: { kind: 'http', baseUrl: 'https://u:p@x.org/' } } })).toMatch(
      /must not hold credentials/,
    );
    expect(problem({ sources: { api: { kind: 'ftp' } } })).toMatch(/tabular\.sources\.api.*must be a source/);
    expect(problem({ sources: { '9x': { kind: 'http', baseUrl: 'https://x.org' } } })).toMatch(
      /source names start/,
    );
    const m = problem({
      sources: {
        api: {
          kind: 'http',
          baseUrl: 'https://x.org',
          headers: { Authorization: 'Bearer zz-secret-41' },
          timeoutMs: 5,
        },
      },
    });
    expect(m).toMatch(/tabular\.sources\.api\.timeoutMs = 5 is not allowed: must be an integer from 100/);
    const h = problem({
      sources: { api: { kind: 'http', baseUrl: 'https://x.org', headers: { 'Bad Name': 'hv-secret-42' } } },
    });
    expect(h).toMatch(/header names/);
    expect(h).not.toContain('hv-secret-42');
  });
});
