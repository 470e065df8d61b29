/**
 * Which rclone config file a job uses, and the secrets in it. The file comes from the job's input, else
 * from the legacy per-user credentials in the `auth` data dir (`<auth>/<user_email>.conf` or
 * `<auth>/<user_email>/rclone.conf`), else from the settings. Every credential-looking value is read
 * out, in the file's obscured form and revealed, so it can be removed from every line rclone prints.
 */
import { createDecipheriv } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CoreContext } from '../../lib/context.js';
import { DataInputError } from '../../lib/errors.js';
import { confine, namedRoot } from '../../lib/paths.js';
import { runTool } from '../../lib/tool.js';
import { RCLONE } from '../../lib/toolTable.js';
import type { DataEnv } from './env.js';

export interface RcloneConfig {
  /** The config file's real path. */
  path: string;
  /** Where it came from, for the result and messages. */
  from: 'input' | 'auth' | 'settings';
  /** Values never to show: each credential as written in the file and revealed. */
  secrets: string[];
}

const EMAIL = /^[^/\0\s]+@[^/\0\s]+$/;

/** Resolves the config file for a job; refuses a job that has none. */
export async function resolveRcloneConfig(
  input: { config?: string | undefined; user_email?: string | undefined },
  env: DataEnv,
): Promise<RcloneConfig> {
  let path: string;
  let from: RcloneConfig['from'];
  if (input.config !== undefined) {
    path = (await confine(input.config, env.dataDirs, { field: 'config', mustExist: true, kind: 'file' }))
      .real;
    from = 'input';
  } else if (input.user_email !== undefined) {
    if (!EMAIL.test(input.user_email) || input.user_email.startsWith('.')) {
      throw new DataInputError(
        `user_email: ${JSON.stringify(input.user_email)} is not an e-mail address (user@host, no "/")`,
      );
    }
    const auth = namedRoot(env.dataDirs, 'auth');
    const candidates = [join(auth, `${input.user_email}.conf`), join(auth, input.user_email, 'rclone.conf')];
    let found: string | null = null;
    for (const c of candidates) {
      const hit = await confine(c, env.dataDirs, { field: 'user_email' }).catch(() => null);
      if (hit?.exists) {
        found = hit.real;
        break;
      }
    }
    if (!found) {
      throw new DataInputError(
        `user_email: no rclone credentials for "${input.user_email}" in the auth data dir (looked for ${candidates.join(', ')})`,
      );
    }
    path = found;
    from = 'auth';
  } else if (env.rclone?.config) {
    path = env.rclone.config;
    from = 'settings';
  } else {
    throw new DataInputError(
      'no rclone config: give config (a file in the data dirs) or user_email (credentials in the auth data dir), or set data.rclone.config in the settings',
    );
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new DataInputError(`the rclone config "${path}" cannot be read: ${(err as Error).message}`);
  }
  return { path, from, secrets: configSecrets(text) };
}

/** Keys whose values are credentials, in any backend. */
const SECRET_KEY =
  /(pass|password|token|secret|key|credentials|sas_url|bearer|cookie|auth|private|passphrase|session)/i;

/** Every credential value in an rclone config (INI) text, as written and revealed, longest first. */
export function configSecrets(text: string): string[] {
  const out = new Set<string>();
  for (const raw of text.split(/\r?\n/)) {
    const m = /^\s*([^#;=\s][^=]*?)\s*=\s*(.*?)\s*$/.exec(raw);
    if (!m || !SECRET_KEY.test(m[1]!) || !m[2]) continue;
    const value = m[2];
    // Flags and numbers (use_session = true) are no secret, and redacting them would mangle every line.
    if (/^(true|false|-?\d+(\.\d+)?)$/i.test(value)) continue;
    out.add(value);
    const revealed = reveal(value);
    if (revealed) out.add(revealed);
    // OAuth tokens are JSON: each string inside (access and refresh tokens) is a secret too.
    if (value.startsWith('{')) {
      try {
        for (const v of Object.values(JSON.parse(value) as Record<string, unknown>))
          if (typeof v === 'string' && v.length >= 8) out.add(v);
      } catch {
        // not JSON after all: the whole value is already listed
      }
    }
  }
  return [...out].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
}

// rclone's fixed obscuring key (fs/config/obscure): obscuring hides a password from a glance, nothing
// more, so the revealed form is just as secret and is redacted too.
const OBSCURE_KEY = Buffer.from('9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638', 'hex');

/** The plain text of an rclone-obscured value, or null when it is not one. */
export function reveal(value: string): string | null {
  if (!/^[A-Za-z0-9_-]{24,}$/.test(value)) return null;
  const buf = Buffer.from(value, 'base64url');
  if (buf.length <= 16) return null;
  const d = createDecipheriv('aes-256-ctr', OBSCURE_KEY, buf.subarray(0, 16));
  const plain = Buffer.concat([d.update(buf.subarray(16)), d.final()]).toString('utf8');
  // A value that was never obscured decrypts to noise: keep only printable results.
  return /^[\x20-\x7e]+$/.test(plain) ? plain : null;
}

/** The remotes a config defines, with their types (`rclone listremotes --long`). */
export async function listRemotes(
  config: RcloneConfig,
  ctx: CoreContext,
  env: DataEnv,
): Promise<Map<string, string>> {
  const lines: string[] = [];
  await runTool(
    {
      tool: RCLONE,
      ...(env.rclone?.program ? { program: env.rclone.program } : {}),
      args: ['listremotes', '--long', '--config', config.path],
      secrets: config.secrets,
      onLine: (l, stream) => {
        if (stream === 'stdout') lines.push(l);
      },
    },
    { ...ctx, progress: () => {}, log: () => {} },
  );
  const remotes = new Map<string, string>();
  for (const l of lines) {
    const m = /^(.+?):\s+(\S+)\s*$/.exec(l);
    if (m) remotes.set(m[1]!, m[2]!);
  }
  return remotes;
}
