#!/usr/bin/env node
// Wall time of `pg-tenant-proxy migrate`: TENANTS tenants (created through the library, not counted) × MIGRATIONS
// migrations, at CONCURRENCY, on a throwaway PostgreSQL; then a rerun with nothing to do.
// `npm run build && node bench/migrate-tenants.mjs` (TENANTS=500 MIGRATIONS=3 CONCURRENCY=4 ROLES=1); markdown on stdout.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { TenantAdmin } from '../dist/index.js';
import { CLI, ROLES, withTenantBench } from './tenant-bench.mjs';

const TENANTS = Number(process.env.TENANTS ?? 500);
const MIGRATIONS = Number(process.env.MIGRATIONS ?? 3);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 4);

await withTenantBench({ name: 'migrate' }, async ({ config, configFile, work }) => {
  const admin = await TenantAdmin.open(config, { actor: 'bench' });
  for (let i = 0; i < TENANTS; i++) await admin.create(`t${String(i).padStart(4, '0')}`);
  await admin.close();

  const dir = join(work, 'migrations');
  mkdirSync(dir);
  const bodies = [
    'CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now());',
    'CREATE TABLE posts (id bigserial PRIMARY KEY, author_id bigint NOT NULL REFERENCES users (id), title text NOT NULL);\nCREATE INDEX posts_author ON posts (author_id);',
    'ALTER TABLE posts ADD COLUMN published boolean NOT NULL DEFAULT false;',
  ];
  for (let i = 0; i < MIGRATIONS; i++) {
    writeFileSync(
      join(dir, `${String(i + 1).padStart(4, '0')}_m.sql`),
      `${bodies[i % bodies.length].replace(/\b(users|posts)\b/g, (n) => (i < bodies.length ? n : `${n}${i}`))}\n`,
    );
  }
  const run = () => {
    const t0 = performance.now();
    execFileSync(
      process.execPath,
      [CLI, 'migrate', '--config', configFile, '--dir', dir, '--concurrency', String(CONCURRENCY)],
      { stdio: 'ignore' },
    );
    return performance.now() - t0;
  };
  const firstMs = run();
  const againMs = run();
  console.log('| what | tenants | migrations | concurrency | wall time |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  console.log(
    `| migrate, everything missing | ${TENANTS} | ${MIGRATIONS} | ${CONCURRENCY} | ${(firstMs / 1000).toFixed(2)} s |`,
  );
  console.log(
    `| migrate again, nothing to do | ${TENANTS} | ${MIGRATIONS} | ${CONCURRENCY} | ${(againMs / 1000).toFixed(2)} s |`,
  );
  console.log(
    `\ntenancy.roles: ${ROLES}; load average at the end: ${os.loadavg()[0].toFixed(1)} (CLI process start included)`,
  );
});
