import { defineConfig } from 'vitest/config';

const workers = Number(process.env.JOBD_TEST_WORKERS ?? 2);
if (!Number.isInteger(workers) || workers < 1) {
  throw new Error(
    `JOBD_TEST_WORKERS = "${process.env.JOBD_TEST_WORKERS}" is not allowed: must be an integer from 1`,
  );
}

export default defineConfig({
  // The daemon imports a few CommonJS parts of the sandbox (.cts) for inline jobs: transform them too.
  esbuild: { include: /\.([cm]?ts|[jt]sx)$/ },
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/helpers/globalSetup.ts'],
    pool: 'forks',
    // Two test files at once: most tests wait on real processes (daemons, tools, jobctl), so one file at
    // a time leaves a core idle. Each file has its own databases. JOBD_TEST_WORKERS overrides.
    poolOptions: { forks: { maxForks: workers, minForks: 1 } },
    // Generous: many tests drive real processes (jobd, jobctl, tools), which a busy 2-core machine
    // slows several times over. What a test waits for has its own deadline; this only bounds a hang.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
