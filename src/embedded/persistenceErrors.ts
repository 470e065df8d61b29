/**
 * What start-up reports about a data directory it cannot use as it is: a file another build must read
 * (DataDirCorruptError), or damage that a repair can cut away (DataDirDamagedError, with a Damage for
 * each damaged file). A torn tail of the log, a write cut short by a crash, is neither: it is dropped.
 */

/** The data directory holds files this build cannot read safely. */
export class DataDirCorruptError extends Error {
  readonly code: string = 'EMBEDDED_DATA_DIR_CORRUPT';
  readonly file: string;
  constructor(file: string, detail: string, message = `cannot open data file ${file}: ${detail}`) {
    super(message);
    this.name = 'DataDirCorruptError';
    this.file = file;
  }
}

/** Where one file of the data directory stops being readable, and what lies on each side. */
export interface Damage {
  file: string;
  what: 'snapshot' | 'log' | 'orphan log';
  /** Offset of the first byte not kept: the damaged frame (or 0 for a damaged header). */
  offset: number;
  reason: string;
  fileSize: number;
  /** Intact frames before the damage: kept by a repair. */
  framesKept: number;
  /** Intact frames found after the damaged one: set aside by a repair, with the damaged frame. */
  framesAfter: number;
  /** Snapshot: documents before the damage, and all it held when its end frame could still be read. */
  documentsKept?: number;
  documentsTotal?: number;
  /** Log: time of the last operation before the damage. Snapshot: when it was written. */
  lastGoodTime?: Date;
  /** Set by a repair: where the whole damaged file was kept. */
  keptAs?: string;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** One damage in a sentence: the file, the offset and reason, and what is before and after it. */
export function describeDamage(d: Damage): string {
  if (d.what === 'orphan log') {
    return `${d.file}: ${d.reason}; its ${plural(d.fileSize, 'byte')} (${plural(d.framesAfter, 'intact frame')}) cannot be replayed`;
  }
  const after = d.fileSize - d.offset;
  const past: string[] = [
    d.offset === 0
      ? 'the whole file'
      : `the damaged frame and ${plural(d.framesAfter, 'intact frame')} after it`,
  ];
  if (d.documentsTotal !== undefined && d.documentsKept !== undefined) {
    past.push(`${d.documentsTotal - d.documentsKept} of the snapshot's ${d.documentsTotal} documents`);
  }
  const before = [plural(d.framesKept, 'intact frame')];
  if (d.documentsKept !== undefined) before.push(plural(d.documentsKept, 'document'));
  if (d.lastGoodTime) {
    before.push(
      d.what === 'log'
        ? `the last operation at ${d.lastGoodTime.toISOString()}`
        : `the snapshot written at ${d.lastGoodTime.toISOString()}`,
    );
  }
  return (
    `${d.file}: ${d.reason}; ${plural(after, 'byte')} from offset ${d.offset} to the end of the file ` +
    `(${past.join('; ')}) are past the damage; before it: ${before.join(', ')}`
  );
}

/**
 * The data directory is damaged and was opened without repair: nothing in it has been changed. A
 * repair keeps everything before each damage and keeps each damaged file whole beside it.
 */
export class DataDirDamagedError extends DataDirCorruptError {
  override readonly code = 'EMBEDDED_DATA_DIR_DAMAGED';
  readonly dir: string;
  readonly damages: readonly Damage[];
  constructor(dir: string, damages: readonly Damage[]) {
    const detail = damages.map(describeDamage).join('. ');
    super(
      damages[0]?.file ?? dir,
      detail,
      `data directory ${dir} is damaged: ${detail}. ` +
        'Nothing has been changed. To start with everything before the damage, start with repair ' +
        '(jobd-embedded --repair, or the jobd setting embedded.repair: true); each damaged file is then ' +
        'kept whole beside it as <name>.damaged-<time>',
    );
    this.name = 'DataDirDamagedError';
    this.dir = dir;
    this.damages = damages;
  }
}
