/**
 * The web dashboard at `/`: static files (HTML, plain ES modules, CSS) shipped beside this module in
 * ./dashboard/ (copied into dist by `npm run build`), read once when the server starts. The page holds
 * no data itself: it reads the JSON routes with the visitor's token, so it is served without one.
 * A strict Content-Security-Policy allows only its own scripts and styles, the API, and images it
 * fetched itself (blob:): no inline script or handler, nothing from another origin.
 */
import { readdir, readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { App } from './routes/route.js';
import { sendProblem } from './problem.js';

export const DASHBOARD_DIR = fileURLToPath(new URL('./dashboard/', import.meta.url));

export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export async function registerDashboard(app: App): Promise<void> {
  const files = new Map<string, { type: string; body: Buffer }>();
  for (const name of await readdir(DASHBOARD_DIR)) {
    const type = TYPES[extname(name)];
    if (type) files.set(name, { type, body: await readFile(DASHBOARD_DIR + name) });
  }
  if (!files.has('index.html')) throw new Error(`the dashboard's files are missing from ${DASHBOARD_DIR}`);
  const send = (name: string, reply: import('fastify').FastifyReply) => {
    const f = files.get(name);
    if (!f) return sendProblem(reply, 404, `no dashboard file ${name}`);
    return reply
      .type(f.type)
      .header('content-security-policy', DASHBOARD_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('cache-control', 'no-cache')
      .send(f.body);
  };
  const hidden = { schema: { hide: true } };
  app.get('/', hidden, (_req, reply) => send('index.html', reply));
  app.get<{ Params: { file: string } }>('/dashboard/:file', hidden, (req, reply) =>
    send(req.params.file, reply),
  );
}
