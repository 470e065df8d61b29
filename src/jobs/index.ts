/**
 * What a job type's module imports (`import { defineJobType, dataPath } from 'jobd/jobs'`): small on
 * purpose, because sandbox children load it. It never pulls in the store, the worker or the driver.
 */
export {
  defineJobType,
  legacyNames,
  isDefinedJobType,
  type DefinedJobType,
  type JobTypeSpec,
  type LazyJobTypeSpec,
  type JobTypeDefaults,
  type TypedJobContext,
} from './defineJobType.js';
export { dataPath, type DataPathOptions, type DataDirs, type DeclaredPath } from './dataPath.js';
export { DoNotRetryError, InvalidInputError, InvalidOutputError } from '../errors.js';
export { PathNotAllowedError } from './lib/errors.js';
export type { JobContext } from '../types.js';
export type { Zod } from './lazyZod.js';
