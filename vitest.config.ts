// vitest: unit and integration tests against one shared PostgreSQL started by the global setup.

import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    fileParallelism: true,
    // Integration files each start proxies and open real backends; two at a time keeps max_connections and CPU sane.
    maxWorkers: 2,
  },
});
