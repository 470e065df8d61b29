/**
 * Views (create with viewOn + pipeline) and collection validators (create/collMod with
 * validator, validationLevel, validationAction). A view holds no documents: reads run its
 * pipeline over the source, writes are refused with CommandNotSupportedOnView.
 */
import type { Document } from 'bson';
import { CommandError } from './errors.js';
import { isPlainObject } from './bsonOrder.js';
import type { Collection } from './collection.js';
import type { Engine } from './engine.js';
import { compileFilter, type Matcher } from './mql.js';
import { checkPipeline } from './mqlRefusals.js';

const MAX_VIEW_DEPTH = 20;

export function isView(coll: Collection | undefined): boolean {
  return coll !== undefined && typeof coll.options.viewOn === 'string';
}

/** Refuses a write addressed to a view. */
export function assertWritable(coll: Collection | undefined): void {
  if (coll && isView(coll))
    throw new CommandError('CommandNotSupportedOnView', `Namespace ${coll.ns} is a view, not a collection`);
}

/** The collection a view finally reads and the pipeline that turns it into the view. */
export function resolveView(engine: Engine, view: Collection): { source: string; pipeline: Document[] } {
  let pipeline: Document[] = [];
  let current: Collection | undefined = view;
  let source = view.name;
  for (let depth = 0; current && isView(current); depth++) {
    if (depth >= MAX_VIEW_DEPTH)
      throw new CommandError(
        'ViewDepthLimitExceeded',
        `View depth too deep or view cycle detected; maximum depth is ${MAX_VIEW_DEPTH}`,
      );
    pipeline = [...((current.options.pipeline as Document[] | undefined) ?? []), ...pipeline];
    source = current.options.viewOn as string;
    current = engine.getCollection(view.db, source);
  }
  return { source, pipeline };
}

export function validateViewOptions(options: Document): void {
  if (typeof options.viewOn !== 'string' || options.viewOn.length === 0)
    throw new CommandError('TypeMismatch', "'viewOn' option must be a non-empty string");
  const pipeline = options.pipeline ?? [];
  if (!Array.isArray(pipeline)) throw new CommandError('TypeMismatch', "'pipeline' option must be an array");
  for (const stage of pipeline as unknown[]) {
    if (!isPlainObject(stage) || Object.keys(stage).length !== 1)
      throw new CommandError(
        'FailedToParse',
        'A pipeline stage specification object must contain exactly one field.',
      );
    const name = Object.keys(stage)[0] as string;
    if (name === '$out' || name === '$merge' || name === '$changeStream') {
      throw new CommandError('OptionNotSupportedOnView', `${name} cannot be used in a view definition`);
    }
  }
  checkPipeline(pipeline as unknown[]);
  for (const k of Object.keys(options)) {
    if (k !== 'viewOn' && k !== 'pipeline' && k !== 'collation')
      throw new CommandError('InvalidOptions', `option '${k}' is not valid for a view`);
  }
  if (options.collation !== undefined)
    throw new CommandError(
      'InvalidOptions',
      `views with a default collation are not supported by the jobd embedded server`,
    );
}

const LEVELS = ['off', 'strict', 'moderate'];
const ACTIONS = ['error', 'warn'];

export function validateValidatorOptions(options: Document): void {
  if (options.validator !== undefined) {
    if (!isPlainObject(options.validator))
      throw new CommandError('TypeMismatch', "'validator' must be an object");
    compileFilter(options.validator);
  }
  if (options.validationLevel !== undefined && !LEVELS.includes(options.validationLevel as string)) {
    throw new CommandError(
      'BadValue',
      `Enumeration value '${String(options.validationLevel)}' for field 'validationLevel' is not a valid value.`,
    );
  }
  if (options.validationAction !== undefined && !ACTIONS.includes(options.validationAction as string)) {
    throw new CommandError(
      'BadValue',
      `Enumeration value '${String(options.validationAction)}' for field 'validationAction' is not a valid value.`,
    );
  }
}

const compiled = new WeakMap<Document, Matcher>();

/**
 * Throws DocumentValidationFailure (121) when `doc` fails the collection's validator.
 * `before` is the current version for an update: under validationLevel 'moderate' documents
 * that already failed validation may still be updated.
 */
export function checkValidator(coll: Collection, doc: Document, before?: Document): void {
  const validator = coll.options.validator as Document | undefined;
  if (!validator || Object.keys(validator).length === 0) return;
  const level = (coll.options.validationLevel as string | undefined) ?? 'strict';
  if (level === 'off' || coll.options.validationAction === 'warn') return;
  let matcher = compiled.get(validator);
  if (!matcher) compiled.set(validator, (matcher = compileFilter(validator)));
  if (matcher.test(doc)) return;
  if (level === 'moderate' && before && !matcher.test(before)) return;
  const clauses = Object.keys(validator);
  throw new CommandError('DocumentValidationFailure', 'Document failed validation', {
    errInfo: {
      failingDocumentId: doc._id,
      details: {
        operatorName: clauses.length === 1 && (clauses[0] as string).startsWith('$') ? clauses[0] : '$and',
        specifiedAs: validator,
        reason: 'the document does not match the collection validator',
      },
    },
  });
}
