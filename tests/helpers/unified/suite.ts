/**
 * One vitest suite over a folder of unified-format case files, run through the official driver
 * against the backend the harness chose. Each case is a test: it passes when its expectations held
 * (and at least one was checked), fails otherwise, and is skipped with its reason when it does not
 * apply to this server or uses something the runner does not map. The suite prints its counts.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { MongoClient } from 'mongodb';
import { loadSpecFiles, SkipCase, SpecRunner } from './runner.js';
import { describeServer } from './requirements.js';

export function defineSpecSuite(label: string, title: string, casesDir: string): void {
  if (!existsSync(casesDir)) {
    console.log(`[${label}] ${casesDir} is absent: ${title} are skipped`);
    describe.skip(`${title} (absent: ${casesDir})`, () => {
      it.skip('cases folder is absent', () => {});
    });
    return;
  }
  const files = loadSpecFiles(casesDir);
  const skipped = new Map<string, number>();
  const failed: string[] = [];
  let passed = 0;
  let internal: MongoClient;
  let runner: SpecRunner;

  describe(title, () => {
    beforeAll(async () => {
      const uri = inject('mongoUri');
      internal = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
      await internal.connect();
      const server = await describeServer(internal.db('admin'));
      console.log(
        `[${label}] ${files.length} files; server ${server.version.join('.')} (${server.topology}, ${inject('backend')})`,
      );
      runner = new SpecRunner(uri, server, internal);
    });

    afterAll(async () => {
      const total = passed + failed.length + [...skipped.values()].reduce((a, b) => a + b, 0);
      console.log(
        `[${label}] ${total} cases: ${passed} passed, ${failed.length} failed, ${total - passed - failed.length} skipped`,
      );
      if (failed.length > 0) console.log(`[${label}] failed:\n${failed.map((f) => `  ${f}`).join('\n')}`);
      if (skipped.size > 0) {
        const lines = [...skipped.entries()]
          .sort((a, b) => b[1] - a[1])
          .map(([reason, n]) => `  ${String(n).padStart(4)}  ${reason}`);
        console.log(`[${label}] skipped cases by reason:\n${lines.join('\n')}`);
      }
      await runner?.close();
      await internal?.close();
    });

    for (const { name, data } of files) {
      for (const test of data.tests) {
        const caseName = `${name} › ${test.description}`;
        it(
          caseName,
          async (ctx) => {
            let reason = await runner.skipReason(data, test, name);
            let assertions = 0;
            if (reason === undefined) {
              try {
                assertions = (await runner.run(data, test)).assertions;
                expect(
                  assertions,
                  'the case checked nothing (no result, error, event or outcome)',
                ).toBeGreaterThan(0);
              } catch (err) {
                if (!(err instanceof SkipCase)) {
                  failed.push(
                    `${caseName}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
                  );
                  throw err;
                }
                reason = err.message;
              }
            }
            if (reason !== undefined) {
              const category = reason.replace(/\(server is [^)]*\)/, '').trim();
              skipped.set(category, (skipped.get(category) ?? 0) + 1);
              ctx.skip(reason);
            }
            passed++;
            await ctx.annotate(`${assertions} expectation(s) checked`);
          },
          60_000,
        );
      }
    }
  });
}
