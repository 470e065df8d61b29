/**
 * GNU tar headers, as `tar --format=gnu --numeric-owner --owner=0 --group=0` writes them: a 512-byte
 * header, preceded by a `././@LongLink` entry ('L' for the name, 'K' for the link target) when a name
 * does not fit its 100 bytes. Only what data_compression stores: directories, regular files, symlinks
 * and hard links, owner and group 0.
 */

export const BLOCK = 512;
/** GNU tar's default record (20 blocks): it pads an archive's end to a whole record. */
export const RECORD = 10240;
const NAME_FIELD = 100;
/** The largest value an 11-digit octal field holds; beyond it GNU tar writes base-256. */
const OCTAL_MAX = 0o77777777777;

export interface HeaderEntry {
  /** The stored name; a directory's ends with '/'. */
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'link';
  mode: number;
  size: number;
  /** Whole seconds since the epoch, 0 or more. */
  mtime: number;
  linkname?: string;
}

const TYPEFLAG = { file: '0', link: '1', symlink: '2', directory: '5' } as const;

/** Whether tar headers can store this modification time (seconds) as GNU tar does, in octal. */
export function storableMtime(seconds: number): boolean {
  return Number.isInteger(seconds) && seconds >= 0 && seconds <= OCTAL_MAX;
}

/** The header block(s) of one entry. */
export function gnuHeader(e: HeaderEntry): Buffer {
  const name = Buffer.from(e.name);
  const link = Buffer.from(e.linkname ?? '');
  const parts: Buffer[] = [];
  if (link.length >= NAME_FIELD) parts.push(...longLink('K', link));
  if (name.length >= NAME_FIELD) parts.push(...longLink('L', name));
  parts.push(block(name, TYPEFLAG[e.type], e.mode & 0o7777, e.size, e.mtime, link));
  return Buffer.concat(parts);
}

/** Zeros that pad `size` bytes of content to a whole block. */
export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function longLink(flag: 'K' | 'L', value: Buffer): Buffer[] {
  const content = Buffer.alloc(value.length + 1 + padding(value.length + 1));
  value.copy(content);
  return [block(Buffer.from('././@LongLink'), flag, 0o644, value.length + 1, 0, Buffer.alloc(0)), content];
}

function block(name: Buffer, flag: string, mode: number, size: number, mtime: number, link: Buffer): Buffer {
  const b = Buffer.alloc(BLOCK);
  name.copy(b, 0, 0, Math.min(name.length, NAME_FIELD));
  octal(b, 100, 8, mode);
  octal(b, 108, 8, 0); // uid
  octal(b, 116, 8, 0); // gid
  number12(b, 124, size);
  number12(b, 136, mtime);
  b.write(flag, 156, 'latin1');
  link.copy(b, 157, 0, Math.min(link.length, NAME_FIELD));
  b.write('ustar  \0', 257, 'latin1'); // GNU magic and version
  b.fill(0x20, 148, 156); // the checksum is summed with its own field as spaces
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

function octal(b: Buffer, at: number, width: number, value: number): void {
  b.write(`${value.toString(8).padStart(width - 1, '0')}\0`, at, 'latin1');
}

/** A 12-byte size or time field: octal, or GNU's base-256 (high bit set) past 8 GiB. */
function number12(b: Buffer, at: number, value: number): void {
  if (value <= OCTAL_MAX) return octal(b, at, 12, value);
  b[at] = 0x80;
  let v = BigInt(value);
  for (let i = at + 11; i > at; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}
