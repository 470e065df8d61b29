/**
 * MongoDB collation documents mapped onto ICU through Intl.Collator. A collation decides how
 * strings compare wherever a command compares them: matching, sorting, distinct.
 * `locale: 'simple'` (or no collation) is binary comparison of UTF-8, which for JS strings is
 * code-unit order except around surrogates — the order the rest of the server already uses.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject, numericValue, type StringCompare } from './bsonOrder.js';

export interface Collation {
  /** The collation document as the client gave it (for error messages and explain). */
  readonly spec: Document;
  readonly compare: StringCompare;
}

const KNOWN = new Set([
  'locale',
  'caseLevel',
  'caseFirst',
  'strength',
  'numericOrdering',
  'alternate',
  'maxVariable',
  'backwards',
  'normalization',
  'version',
]);

/** MongoDB spells locales with underscores and ICU keywords after '@'; Intl wants BCP 47. */
function toBcp47(locale: string): string {
  const [base = '', keywords] = locale.split('@');
  let tag = base.replace(/_/g, '-');
  const co = /collation=([a-z]+)/.exec(keywords ?? '')?.[1];
  if (co) tag += `-u-co-${co === 'phonebook' ? 'phonebk' : co === 'traditional' ? 'trad' : co}`;
  return tag;
}

function bad(message: string): CommandError {
  return new CommandError('BadValue', message);
}

/** Parses a command's `collation`; undefined for none or for the simple (binary) collation. */
export function parseCollation(raw: unknown): Collation | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isPlainObject(raw))
    throw new CommandError(
      'TypeMismatch',
      `BSON field 'collation' is the wrong type, expected type 'object'`,
    );
  for (const k of Object.keys(raw)) {
    if (!KNOWN.has(k))
      throw new CommandError('Location40415', `BSON field 'collation.${k}' is an unknown field.`);
  }
  const locale = raw.locale as unknown;
  if (typeof locale !== 'string')
    throw bad(`Required field 'collation.locale' is missing or is not a string`);
  if (locale === 'simple') {
    const others = Object.keys(raw).filter((k) => k !== 'locale');
    if (others.length > 0)
      throw bad(`If locale=simple, no other fields may be specified: collation.${others[0] as string}`);
    return undefined;
  }
  const tag = toBcp47(locale);
  let supported: string[];
  try {
    supported = Intl.Collator.supportedLocalesOf([tag]);
  } catch {
    supported = [];
  }
  if (supported.length === 0 && locale !== 'root' && locale !== '')
    throw bad(`Field 'locale' is invalid in: { locale: "${locale}" }`);

  const strength = raw.strength === undefined ? 3 : Number(numericValue(raw.strength));
  if (![1, 2, 3, 4, 5].includes(strength))
    throw bad(`Field 'strength' must be an integer 1 through 5. Got: ${String(raw.strength)}`);
  const caseLevel = bool(raw, 'caseLevel');
  const numericOrdering = bool(raw, 'numericOrdering');
  const backwards = bool(raw, 'backwards');
  bool(raw, 'normalization'); // ICU collators compare canonically equivalent strings as equal either way
  const caseFirst = raw.caseFirst ?? 'off';
  if (!['upper', 'lower', 'off'].includes(caseFirst as string))
    throw bad(`Field 'caseFirst' must be 'upper', 'lower' or 'off'. Got: ${String(caseFirst)}`);
  const alternate = raw.alternate ?? 'non-ignorable';
  if (alternate !== 'non-ignorable' && alternate !== 'shifted')
    throw bad(`Field 'alternate' must be 'non-ignorable' or 'shifted'. Got: ${String(alternate)}`);
  const maxVariable = raw.maxVariable ?? 'punct';
  if (maxVariable !== 'punct' && maxVariable !== 'space')
    throw bad(`Field 'maxVariable' must be 'punct' or 'space'. Got: ${String(maxVariable)}`);

  // What Intl.Collator cannot express is refused rather than approximated.
  if (backwards)
    throw bad(
      `collation option 'backwards' (French secondary ordering) is not supported by the jobd embedded server`,
    );
  if (alternate === 'shifted' && maxVariable === 'space') {
    throw bad(
      `collation option 'maxVariable: space' with 'alternate: shifted' is not supported by the jobd embedded server`,
    );
  }
  if (strength === 4 && alternate === 'shifted') {
    throw bad(
      `collation option 'strength: 4' with 'alternate: shifted' is not supported by the jobd embedded server`,
    );
  }

  let sensitivity: Intl.CollatorOptions['sensitivity'];
  if (strength === 1) sensitivity = caseLevel ? 'case' : 'base';
  else if (strength === 2) sensitivity = caseLevel ? 'variant' : 'accent';
  else sensitivity = 'variant';
  const collator = new Intl.Collator(supported[0] ?? 'und', {
    usage: 'sort',
    sensitivity,
    numeric: numericOrdering,
    caseFirst: caseFirst === 'off' ? 'false' : (caseFirst as 'upper' | 'lower'),
    ignorePunctuation: alternate === 'shifted',
  });
  const icu = collator.compare.bind(collator);
  // Strength 5 (identical) breaks ties between collation-equal strings by code point.
  const compare: StringCompare = strength === 5 ? (a, b) => icu(a, b) || (a < b ? -1 : a > b ? 1 : 0) : icu;
  return { spec: raw, compare };
}

function bool(raw: Document, field: string): boolean {
  const v = raw[field] as unknown;
  if (v === undefined) return false;
  if (typeof v !== 'boolean')
    throw new CommandError(
      'TypeMismatch',
      `BSON field 'collation.${field}' is the wrong type, expected type 'bool'`,
    );
  return v;
}
