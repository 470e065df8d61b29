/**
 * MongoDB's change-stream conformance cases (unified test format, source/change-streams/tests/unified
 * in mongodb/specifications), run through the official driver against the backend the harness chose.
 * The cases live outside the repository, in ../shared/mongodb-spec-tests/change-streams; where that
 * folder is absent, the suite says so and skips. The suite prints its pass, fail and skip counts, with
 * the reason for each skip.
 *
 *   npx vitest run tests/embedded/spec-changestreams
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineSpecSuite } from '../helpers/unified/suite.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

defineSpecSuite(
  'spec-changestreams',
  "MongoDB's change-stream spec cases",
  path.resolve(repoRoot, '../shared/mongodb-spec-tests/change-streams'),
);
