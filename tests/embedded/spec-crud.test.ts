/**
 * MongoDB's own CRUD conformance cases (unified test format), run through the official driver against
 * the backend the harness chose. The cases live outside the repository, in
 * ../shared/mongodb-spec-tests/crud; where that folder is absent, the suite says so and skips.
 *
 *   npx vitest run tests/embedded/spec-crud
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, inject, it } from 'vitest';
import { MongoClient } from 'mongodb';
import { loadSpecFiles, SkipCase, SpecRunner } from '../helpers/unified/runner.js';
import { describeServer } from '../helpers/unified/requirements.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const casesDir = path.resolve(repoRoot, '../shared/mongodb-spec-tests/crud');

if (!existsSync(casesDir)) {
  console.log(`[spec-crud] ${casesDir} is absent: MongoDB's CRUD conformance cases are skipped`);
  describe.skip(`MongoDB CRUD spec cases (absent: ${casesDir})`, () => {
    it.skip('cases folder is absent', () => {});
  });
} else {
  const files = loadSpecFiles(casesDir);
  const skipped = new Map<string, number>();
  let eventsUnchecked = 0;
  let internal: MongoClient;
  let runner: SpecRunner;

  describe('MongoDB CRUD spec cases', () => {
    beforeAll(async () => {
      const uri = inject('mongoUri');
      internal = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
      await internal.connect();
      const server = await describeServer(internal.db('admin'));
      console.log(
        `[spec-crud] ${files.length} files; server ${server.version.join('.')} (${server.topology}, ${inject('backend')})`,
      );
      runner = new SpecRunner(uri, server, internal);
    });

    afterAll(async () => {
      if (eventsUnchecked > 0)
        console.log(
          `[spec-crud] ${eventsUnchecked} cases passed with their expectEvents (command monitoring) unchecked`,
        );
      if (skipped.size > 0) {
        const lines = [...skipped.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([reason, n]) => `  ${String(n).padStart(4)}  ${reason}`);
        console.log(`[spec-crud] skipped cases by reason:\n${lines.join('\n')}`);
      }
      await runner?.close();
      await internal?.close();
    });

    for (const { name, data } of files) {
      for (const test of data.tests) {
        it(`${name} › ${test.description}`, async (ctx) => {
          let reason = await runner.skipReason(data, test);
          let notes: string[] = [];
          if (reason === undefined) {
            try {
              notes = await runner.run(data, test);
            } catch (err) {
              if (!(err instanceof SkipCase)) throw err;
              reason = err.message;
            }
          }
          if (reason !== undefined) {
            const category = reason.replace(/\(server is [^)]*\)/, '').trim();
            skipped.set(category, (skipped.get(category) ?? 0) + 1);
            ctx.skip(reason);
          }
          if (notes.length > 0) eventsUnchecked++;
          for (const note of notes) await ctx.annotate(note);
        }, 30_000);
      }
    }
  });
}
