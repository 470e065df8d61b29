/**
 * The conversion's record of finished blocks: an append-only file in the output root. The first
 * line is the job's fingerprint (input identity and options); each further line names one block of
 * planes whose chunks, at every level, are all in place. A torn last line (crash mid-append) is
 * ignored, so the record never claims more than was done.
 */
import { appendFile, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const PROGRESS_FILE = '.jobd-progress';

export interface ProgressState {
  fingerprint: string;
  blocks: Set<number>;
  complete: boolean;
}

export async function readProgress(root: string): Promise<ProgressState | undefined> {
  let text: string;
  try {
    text = await readFile(join(root, PROGRESS_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const lines = text.split('\n');
  const fingerprint = lines[0] ?? '';
  const blocks = new Set<number>();
  let complete = false;
  // Only newline-terminated lines count: the last element after split is the (possibly torn) tail.
  for (const line of lines.slice(1, -1)) {
    if (line === 'complete') complete = true;
    else if (/^block \d+$/.test(line)) blocks.add(Number(line.slice(6)));
  }
  return { fingerprint, blocks, complete };
}

export async function startProgress(root: string, fingerprint: string): Promise<void> {
  await writeFile(join(root, PROGRESS_FILE), `${fingerprint}\n`);
}

export async function recordBlock(root: string, block: number): Promise<void> {
  await appendFile(join(root, PROGRESS_FILE), `block ${block}\n`);
}

export async function recordComplete(root: string): Promise<void> {
  const fh = await open(join(root, PROGRESS_FILE), 'a');
  try {
    await fh.write('complete\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
}
