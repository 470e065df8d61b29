/**
 * The top self-time frames of .cpuprofile files.
 *
 *   node --import tsx bench/profileTop.ts <profile-or-folder>... [--top N] [--json]
 *
 * A folder of profiles is summed as one group (e.g. all pooled children); a folder of folders gives
 * one group per folder (what `npm run bench:profile` writes: daemon/, embedded/, children/).
 */
import { existsSync } from 'node:fs';
import { formatGroup, groupsFrom, summarise } from './lib/cpuProfile.js';

function main(argv: string[]): number {
  let top = 25;
  let json = false;
  const paths: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--top') {
      top = Number(argv[++i]);
      if (!Number.isInteger(top) || top < 1) {
        process.stderr.write(`--top must be an integer >= 1, got '${argv[i]}'\n`);
        return 2;
      }
    } else paths.push(a);
  }
  if (!paths.length) {
    process.stderr.write('usage: profileTop <profile-or-folder>... [--top N] [--json]\n');
    return 2;
  }
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length) {
    process.stderr.write(`not found: ${missing.join(', ')}\n`);
    return 3;
  }
  const groups = groupsFrom(paths).map((g) => summarise(g.name, g.files, top));
  if (!groups.length) {
    process.stderr.write(`no .cpuprofile files in ${paths.join(', ')}\n`);
    return 3;
  }
  process.stdout.write(
    json ? `${JSON.stringify(groups, null, 2)}\n` : `${groups.map(formatGroup).join('\n\n')}\n`,
  );
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`profileTop: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
