/**
 * A directory packed by GNU tar straight into a compressor (zstd, lz4), the two programs joined by one
 * pipe, as `tar -I zstd` does: the data never passes through this process. Packing in JavaScript
 * (tar-stream) and piping into the compressor cost twice the CPU time of `tar --zstd`, CPU the
 * compressor's threads needed.
 *
 * tar gets the exact list jobd made (listTree: sorted, sockets, FIFOs and devices left out) on stdin,
 * NUL-separated and verbatim, so no name is read as an option or a pattern; it stores hard links once
 * and symlinks as links, with owner and group 0 as the JavaScript packer did. A file that changes while
 * it is read makes tar fail (retryable).
 */
import { basename, dirname } from 'node:path';
import type { CoreContext } from '../../lib/context.js';
import { startTool } from '../../lib/tool.js';
import { TAR, type ToolDef } from '../../lib/toolTable.js';
import type { TreeEntry } from './tarPack.js';

/** tar's record: its checkpoints count these. */
const RECORD = 10240;
/** A checkpoint line every this many records (about 1 MB). */
const CHECKPOINT = 100;

export async function tarIntoCompressor(
  root: string,
  entries: TreeEntry[],
  compressor: { tool: ToolDef; args: string[] },
  outFd: number,
  onBytes: (n: number) => void,
  ctx: CoreContext,
  killGraceMs?: number,
): Promise<void> {
  const grace = killGraceMs !== undefined ? { killGraceMs } : {};
  const zip = startTool({ ...compressor, stdin: 'pipe', stdout: outFd, ...grace }, ctx);
  let packer: ReturnType<typeof startTool>;
  try {
    packer = startTool(
      {
        tool: TAR,
        args: [
          '--create',
          '--file=-',
          '--format=gnu',
          '--numeric-owner',
          '--owner=0',
          '--group=0',
          '--no-recursion',
          `--checkpoint=${CHECKPOINT}`,
          '--checkpoint-action=echo=%u',
          `--directory=${dirname(root)}`,
          '--null',
          '--verbatim-files-from',
          '--files-from=-',
        ],
        stdin: 'pipe',
        stdout: zip.stdin!,
        progressFrom: 'stderr',
        onLine: (line, stream) => {
          const m = stream === 'stderr' ? /^tar: (\d+)$/.exec(line) : null;
          if (m) onBytes(Number(m[1]) * RECORD);
        },
        ...grace,
      },
      ctx,
    );
  } catch (err) {
    await zip.stop('failed');
    await zip.done.catch(() => {});
    throw err;
  }
  // tar holds the compressor's stdin now; this copy must close, or the compressor never sees the end.
  zip.stdin!.destroy();
  packer.stdin!.on('error', () => {}); // a tar that exits early: its exit code says why
  const prefix = basename(root);
  const names = [prefix, ...entries.map((e) => `${prefix}/${e.rel}`)];
  packer.stdin!.end(Buffer.from(`${names.join('\0')}\0`));
  // Whichever fails first stops the other.
  await Promise.all([packer.done, zip.done]).catch(async (err: unknown) => {
    await Promise.all([packer.stop('failed'), zip.stop('failed')]);
    await Promise.allSettled([packer.done, zip.done]);
    throw err;
  });
}
