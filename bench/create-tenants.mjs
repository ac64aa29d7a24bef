#!/usr/bin/env node
// Wall time of tenant creation: N creates through one TenantAdmin (the library), then a few `pg-tenant-proxy tenants
// create` processes (the CLI, one process and connection per tenant), on a throwaway PostgreSQL.
// `npm run build && node bench/create-tenants.mjs` (TENANTS=200 CLI_TENANTS=20 ROLES=1 TEMPLATE_TABLES=50
// TEMPLATE_TENANTS=5: CLI creates of a copy of a template schema of that many tables); markdown on stdout.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { TenantAdmin } from '../dist/index.js';
import { CLI, ROLES, withTenantBench } from './tenant-bench.mjs';

const TENANTS = Number(process.env.TENANTS ?? 200);
const CLI_TENANTS = Number(process.env.CLI_TENANTS ?? 20);
const TEMPLATE_TABLES = Number(process.env.TEMPLATE_TABLES ?? 50);
const TEMPLATE_TENANTS = Number(process.env.TEMPLATE_TENANTS ?? 5);

// A template of TEMPLATE_TABLES tables, each with a serial key, a default, a unique index and a foreign key.
async function createTemplate(db) {
  const tables = ['CREATE SCHEMA tmpl', 'SET search_path = tmpl'];
  for (let i = 0; i < TEMPLATE_TABLES; i++) {
    const ref = i === 0 ? '' : `, parent int REFERENCES t${i - 1} (id)`;
    tables.push(
      `CREATE TABLE t${i} (id serial PRIMARY KEY, name text NOT NULL UNIQUE, at timestamptz DEFAULT now()${ref})`,
    );
  }
  await db.query(tables.join('; '));
}

await withTenantBench(
  { name: 'create', tenancy: { registry: { enabled: true } }, prepare: createTemplate },
  async ({ config, configFile }) => {
    // The first open creates the registry; not counted.
    await (await TenantAdmin.open(config, { actor: 'bench' })).close();
    const admin = await TenantAdmin.open(config, { actor: 'bench' });
    const started = performance.now();
    for (let i = 0; i < TENANTS; i++) await admin.create(`t${String(i).padStart(4, '0')}`, { tier: 'free' });
    const libraryMs = performance.now() - started;
    await admin.close();

    const cliStarted = performance.now();
    for (let i = 0; i < CLI_TENANTS; i++) {
      execFileSync(
        process.execPath,
        [CLI, 'tenants', 'create', `c${String(i).padStart(4, '0')}`, '--config', configFile],
        { stdio: 'ignore' },
      );
    }
    const cliMs = performance.now() - cliStarted;

    const templateStarted = performance.now();
    for (let i = 0; i < TEMPLATE_TENANTS; i++) {
      execFileSync(
        process.execPath,
        [CLI, 'tenants', 'create', `m${String(i).padStart(4, '0')}`, '--from-template', 'tmpl', '--config', configFile],
        { stdio: 'ignore' },
      );
    }
    const templateMs = performance.now() - templateStarted;

    const load = os.loadavg()[0].toFixed(1);
    console.log(`| what | tenants | wall time | per tenant |`);
    console.log(`| --- | ---: | ---: | ---: |`);
    console.log(
      `| library, one TenantAdmin | ${TENANTS} | ${(libraryMs / 1000).toFixed(2)} s | ${(libraryMs / TENANTS).toFixed(1)} ms |`,
    );
    console.log(
      `| CLI, one process each | ${CLI_TENANTS} | ${(cliMs / 1000).toFixed(2)} s | ${(cliMs / CLI_TENANTS).toFixed(0)} ms |`,
    );
    console.log(
      `| CLI, \`--from-template\` of ${TEMPLATE_TABLES} tables, one process each | ${TEMPLATE_TENANTS} | ${(templateMs / 1000).toFixed(2)} s | ${(templateMs / TEMPLATE_TENANTS).toFixed(0)} ms |`,
    );
    console.log(`\ntenancy.roles: ${ROLES}; load average at the end: ${load}`);
  },
);
