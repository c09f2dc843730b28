import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Native addons crash in worker threads; each test file gets its own process instead.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
