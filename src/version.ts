/** jobd's version, from package.json (src/ and dist/ are both one folder below it). */
import { readFileSync } from 'node:fs';

let versionCache: string | undefined;

export function jobdVersion(): string {
  if (versionCache === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
        version?: string;
      };
      versionCache = pkg.version ?? '0.0.0';
    } catch {
      versionCache = '0.0.0';
    }
  }
  return versionCache;
}
