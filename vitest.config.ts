import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/helpers/globalSetup.ts'],
    pool: 'forks',
    // Generous: many tests drive real processes (jobd, jobctl, tools), which a busy 2-core machine
    // slows several times over. What a test waits for has its own deadline; this only bounds a hang.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    teardownTimeout: 30_000,
  },
});
