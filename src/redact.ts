/**
 * One rule for hiding credentials in anything jobd prints or logs: log lines, error messages, jobctl's
 * stderr. It works on free text, so it does not matter where a connection string sits or how it is
 * shaped:
 *
 *   mongodb://alice:s3cret@db1,db2/jobd            → mongodb://***@db1,db2/jobd
 *   mongodb//alice:s3cret@db  mongodb:/alice:s3cret@db  alice:s3cret@db:27017
 *                                                   → mongodb//***@db  mongodb:/***@db  ***@db:27017
 *   mongodb://alice:p@ss/w:rd@db (unencoded @ / :)  → mongodb://***@db
 *   ?tlsCertificateKeyFilePassword=x&w=1            → ?tlsCertificateKeyFilePassword=***&w=1
 *   authMechanismProperties=AWS_SESSION_TOKEN:x     → authMechanismProperties=***
 *   {"password":"x"}  { proxyPassword: 'x' }        → {"password":"***"}  { proxyPassword: '***' }
 *
 * Patterns cannot recognise a password that was split from its URI (a driver message that quotes only
 * the password, a percent-decoded copy, a URI cut short by truncation), so the URI a process is
 * configured with is also remembered (protectUri): its password and secret options, raw, percent-decoded
 * and JSON-escaped, are replaced wherever they appear.
 */

/**
 * Option and field names whose values are secrets (MongoDB URI options are case-insensitive): any name
 * ending in password, secret, apiKey...; credential tokens (token, accessToken, AWS_SESSION_TOKEN) but not
 * jobd's own lease or resume tokens, which are not credentials and help when reading logs.
 */
// Quantifiers are bounded so that a long run of letters costs linear time, not quadratic backtracking.
const SECRET_NAME =
  '[A-Za-z0-9_.-]{0,64}(?:password|passwd|pwd|secret|passphrase|apikey|api_key|credentials?)' +
  '|(?:[A-Za-z0-9]{0,32}_)?(?:access|api|auth|bearer|refresh|id|session|security)?_?token' +
  '|pass|authMechanismProperties';

/**
 * name=value, as in a URI's query: the value runs to &, whitespace or a quote (never half a JSON escape),
 * and leaves out a ":" that ends a sentence ("...Password=x: connection refused").
 */
const OPTION_FORM = new RegExp(
  `\\b(${SECRET_NAME})=((?:[^&\\s"'\`\\\\]|\\\\[^"])*?)(?=[&\\s"'\`]|\\\\"|:(?:\\s|$)|$)`,
  'gi',
);
/** "name": "value" in JSON. */
const JSON_FORM = new RegExp(
  `("(?:${SECRET_NAME})"\\s*:\\s*)("(?:[^"\\\\]|\\\\.)*"|-?[0-9][0-9.eE+-]*)`,
  'gi',
);
/** \"name\": \"value\" in JSON that sits inside a JSON string (a log line's message). */
const ESCAPED_JSON_FORM = new RegExp(
  `(\\\\"(?:${SECRET_NAME})\\\\"\\s*:\\s*)(\\\\"(?:[^"\\\\]|\\\\[^"])*\\\\"|-?[0-9][0-9.eE+-]*)`,
  'gi',
);
/** name: 'value' (util.inspect of an options object). */
const INSPECT_FORM = new RegExp(
  `\\b((?:${SECRET_NAME})\\s*:\\s*)('(?:[^'\\\\]|\\\\.)*'|"(?:[^"\\\\]|\\\\.)*")`,
  'gi',
);
/** AWS_SESSION_TOKEN:value inside authMechanismProperties (raw or percent-encoded). */
const AWS_FORM =
  /\b(AWS_[A-Z_]{0,40}(?:TOKEN|KEY|SECRET)[A-Z_]{0,40}\s*(?::|%3A)\s*)((?:[^,&\s"'`}\\]|\\[^"])+)/gi;
/**
 * A run of text that may be one connection string: no whitespace or quotes (a backslash escape, \" in a
 * JSON line, stays inside the run). Runs are matched whole, so the scan is linear; those with an @ are
 * looked at.
 */
const RUN = /(?:[^\s"'`<>\\]|\\[^])+/g;
/** The end of a scheme, well-formed or not: "://", ":/" or "//". */
const SCHEME_END = /^(.*?(?::\/\/?|\/\/))/;

const MASK = '***';
const MIN_SECRET_LENGTH = 3;

const remembered = new Set<string>();
let rememberedByLength: string[] = [];

/** Redact one whitespace/quote-free run that contains an @. */
function redactAtToken(token: string): string {
  const at = token.lastIndexOf('@');
  const before = token.slice(0, at);
  const scheme = SCHEME_END.exec(before);
  if (scheme) {
    const userinfo = before.slice(scheme[1]!.length);
    // A well-formed userinfo has no "/"; one with a "/" but no ":" is a path (node_modules/@scope/...).
    if (userinfo === '' || (userinfo.includes('/') && !userinfo.includes(':'))) return token;
    return `${scheme[1]}${MASK}${token.slice(at)}`;
  }
  // No scheme: only user:password@host is a credential (alice@example.org is not).
  const colon = before.indexOf(':');
  if (colon < 0) return token;
  // Keep what leads up to the user name (uri=, a bracket, a comma).
  const lead = /^.*[=([{,]/.exec(before.slice(0, colon));
  const start = lead ? lead[0].length : 0;
  if (before.slice(start).startsWith('/')) return token; // a path with an @ in it
  return `${before.slice(0, start)}${MASK}${token.slice(at)}`;
}

/** Hide every credential in `text` (free text, a URI, a JSON line). */
export function redact(text: string): string {
  let out = text;
  for (const secret of rememberedByLength) {
    if (out.includes(secret)) out = out.split(secret).join(MASK);
  }
  if (out.includes('@')) out = out.replace(RUN, (run) => (run.includes('@') ? redactAtToken(run) : run));
  if (out.includes('=')) out = out.replace(OPTION_FORM, `$1=${MASK}`);
  if (out.includes(':')) {
    out = out
      .replace(JSON_FORM, `$1"${MASK}"`)
      .replace(ESCAPED_JSON_FORM, `$1\\"${MASK}\\"`)
      .replace(INSPECT_FORM, (_m, name: string, value: string) => `${name}${value[0]}${MASK}${value[0]}`);
  }
  return out.replace(AWS_FORM, `$1${MASK}`);
}

/** The password and secret option values of a connection string, well-formed or not. */
export function uriSecrets(uri: string): string[] {
  const found: string[] = [];
  const rest = uri.trim().replace(/^[A-Za-z][A-Za-z0-9+.-]*:?\/+/, '');
  // The userinfo ends at the last @ before the query; a password may hold unencoded @ / : characters.
  const query = rest.indexOf('?');
  const authority = query >= 0 && rest.lastIndexOf('@', query) >= 0 ? rest.slice(0, query) : rest;
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) found.push(userinfo.slice(colon + 1));
  }
  if (query >= 0) {
    for (const pair of rest.slice(query + 1).split(/[&;]/)) {
      const eq = pair.indexOf('=');
      if (eq < 0) continue;
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (!new RegExp(`^(?:${SECRET_NAME})$`, 'i').test(name)) continue;
      found.push(value);
      // authMechanismProperties=AWS_SESSION_TOKEN:x,SERVICE_NAME:y: each secret property too.
      for (const prop of decode(value).split(',')) {
        const m = /^AWS_[A-Z_]*(?:TOKEN|KEY|SECRET)[A-Z_]*:(.+)$/i.exec(prop);
        if (m) found.push(m[1]!);
      }
    }
  }
  return found.filter((s) => s.length > 0);
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * Remember the secrets of a connection string this process uses, so that redact() hides them in any
 * form: raw, percent-decoded and JSON-escaped. Safe to call with anything ('embedded', undefined).
 */
export function protectUri(uri: unknown): void {
  if (typeof uri !== 'string' || uri === '' || uri === 'embedded') return;
  let added = false;
  for (const secret of uriSecrets(uri)) {
    for (const form of new Set([secret, decode(secret), JSON.stringify(secret).slice(1, -1)])) {
      for (const f of [form, JSON.stringify(form).slice(1, -1)]) {
        if (f.length >= MIN_SECRET_LENGTH && !remembered.has(f)) {
          remembered.add(f);
          added = true;
        }
      }
    }
  }
  // Longest first, so a secret that contains another is replaced whole.
  if (added) rememberedByLength = [...remembered].sort((a, b) => b.length - a.length);
}

/**
 * Remember a secret value this process uses (an HTTP header or an API key from the settings), so that
 * redact() hides it, raw and JSON-escaped, wherever it appears.
 */
export function protectSecret(value: unknown): void {
  if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH) return;
  let added = false;
  for (const f of new Set([value, JSON.stringify(value).slice(1, -1)])) {
    if (!remembered.has(f)) {
      remembered.add(f);
      added = true;
    }
  }
  if (added) rememberedByLength = [...remembered].sort((a, b) => b.length - a.length);
}
