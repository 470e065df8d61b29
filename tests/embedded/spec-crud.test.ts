/**
 * MongoDB's own CRUD conformance cases (unified test format), run through the official driver against
 * the backend the harness chose, command monitoring (expectEvents) included. The cases live outside the
 * repository, in ../shared/mongodb-spec-tests/crud; where that folder is absent, the suite says so and
 * skips. The suite prints its pass, fail and skip counts, with the reason for each skip.
 *
 *   npx vitest run tests/embedded/spec-crud
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineSpecSuite } from '../helpers/unified/suite.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

defineSpecSuite(
  'spec-crud',
  "MongoDB's CRUD spec cases",
  path.resolve(repoRoot, '../shared/mongodb-spec-tests/crud'),
);
