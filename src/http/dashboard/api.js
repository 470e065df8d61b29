// The API from the page: a bearer token kept in sessionStorage (gone when the tab closes), sent as an
// Authorization header, never in a URL. Answers that need a token ask for one.
const KEY = 'jobd.token';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function token() {
  return sessionStorage.getItem(KEY) ?? '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

export function authHeaders() {
  const t = token();
  return t ? { authorization: `Bearer ${t}` } : {};
}

let askToken = () => {};
/** Called with a reason when an answer says a token is missing or not enough. */
export function onTokenNeeded(fn) {
  askToken = fn;
}

async function problemOf(r) {
  try {
    return await r.json();
  } catch {
    return null;
  }
}

export async function api(path, opts = {}) {
  const headers = {
    ...authHeaders(),
    ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
  };
  const r = await fetch(path, {
    method: opts.method ?? 'GET',
    headers,
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  if (r.status === 204) return null;
  if (!r.ok) {
    const problem = await problemOf(r);
    if (r.status === 401 || r.status === 403) askToken(problem?.detail ?? `HTTP ${r.status}`);
    throw new ApiError(r.status, problem);
  }
  return r.json();
}

/** A text answer, or null when the server does not have it (an older server, or no such thing). */
export async function apiText(path) {
  const r = await fetch(path, { headers: authHeaders() });
  if (!r.ok || !(r.headers.get('content-type') ?? '').startsWith('text/plain')) {
    void r.body?.cancel();
    return null;
  }
  return r.text();
}

/** An image from the data dirs, fetched with the token, as a blob: URL (cached by path). */
const images = new Map();
export async function imageUrl(path, { thumbnail = false } = {}) {
  const key = `${thumbnail ? 'thumb' : 'image'}:${path}`;
  const hit = images.get(key);
  if (hit) return hit;
  // MRC images (aligned sums) come as PNG thumbnails the server makes; images as they are.
  const route = thumbnail ? '/api/thumbnails' : '/api/images';
  const r = await fetch(`${route}?path=${encodeURIComponent(path)}`, { headers: authHeaders() });
  if (!r.ok) throw new ApiError(r.status, await problemOf(r));
  const url = URL.createObjectURL(await r.blob());
  images.set(key, url);
  return url;
}
