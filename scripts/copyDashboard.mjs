// `npm run build` step: the dashboard's static files (plain HTML, ES modules and CSS, nothing to
// compile) go beside the compiled server, where src/http/dashboard.ts looks for them.
import { cpSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../src/http/dashboard/', import.meta.url));
const to = fileURLToPath(new URL('../dist/http/dashboard/', import.meta.url));
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
