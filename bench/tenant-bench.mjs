// The setup the tenant-lifecycle benches share: a throwaway PostgreSQL with a `bench` database, the proxy's login
// role, a config (object and YAML file) whose admin.url is the superuser, and cleanup when the bench is done.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stringify } from 'yaml';
import { startPgCluster } from '../dist/dev/pg-cluster.js';
import { prepareProxyRole, revokePublicDefaults } from '../dist/tenants/provision.js';
import { validateConfig } from '../dist/index.js';

/** The built CLI the benches time, one process per call. */
export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** ROLES=0 turns tenancy.roles off. */
export const ROLES = process.env.ROLES !== '0';

/**
 * Runs `bench` against a fresh cluster and removes both afterwards. `tenancy` is merged into the config's;
 * `prepare(db)` runs on the bench database as the superuser before the config exists (a template schema, say).
 * `bench` gets { config, raw, configFile, work }.
 */
export async function withTenantBench({ name, tenancy = {}, prepare }, bench) {
  const cluster = await startPgCluster();
  const work = mkdtempSync(join(os.tmpdir(), `pgtp-${name}-bench-`));
  try {
    const su = new pg.Client({ connectionString: cluster.superuserUrl });
    await su.connect();
    await su.query('CREATE DATABASE bench');
    const proxyPassword = randomBytes(12).toString('hex');
    await prepareProxyRole(su, { role: 'bench_proxy', password: proxyPassword });
    await su.end();
    const adminUrl = new URL(cluster.superuserUrl);
    adminUrl.pathname = '/bench';
    const db = new pg.Client({ connectionString: adminUrl.toString() });
    await db.connect();
    await revokePublicDefaults(db, 'bench', 'bench_proxy');
    await prepare?.(db);
    await db.end();

    const raw = {
      upstream: { url: `postgres://bench_proxy:${proxyPassword}@${cluster.host}:${cluster.port}/bench` },
      auth: { jwt: { secret: randomBytes(32).toString('hex') } },
      tenancy: { roles: ROLES, ...tenancy },
      admin: { url: adminUrl.toString() },
      audit: { file: join(work, 'audit.log') },
    };
    const configFile = join(work, 'proxy.yaml');
    writeFileSync(configFile, stringify(raw));
    return await bench({ config: validateConfig(raw), raw, configFile, work });
  } finally {
    await cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
