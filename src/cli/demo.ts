// `pg-tenant-proxy demo`: throwaway PostgreSQL, two tenants created through the lifecycle API, the proxy on 127.0.0.1:6432, psql lines.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { stringify } from 'yaml';
import { signDevToken } from '../auth/sign-token.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { startPgCluster } from '../dev/pg-cluster.js';
import { createLogger, startProxy } from '../main.js';
import { TenantAdmin } from '../tenants/lifecycle.js';
import { prepareProxyRole, revokePublicDefaults } from '../tenants/provision.js';

const DEMO_CONFIG = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));
const DATABASE = 'pgtp_demo';
const PROXY_ROLE = 'pgtp_proxy';

const TENANTS: Record<string, Array<[number, string, string]>> = {
  acme: [
    [1, 'Road runner traps', 'open'],
    [2, 'Giant magnet', 'shipped'],
  ],
  globex: [
    [1, 'Hammock district survey', 'open'],
    [2, 'Doomsday device', 'cancelled'],
    [3, 'Monorail maintenance', 'open'],
  ],
};

export async function runDemo(): Promise<void> {
  process.stderr.write('starting a throwaway PostgreSQL cluster…\n');
  const cluster = await startPgCluster();
  // The demo's effective config (with its generated secrets) for the `tenants` lines it prints; removed on exit.
  const workDir = mkdtempSync(join(tmpdir(), 'pgtp-demo-'));
  const stopCluster = async (): Promise<void> => {
    await cluster.stop().catch(() => undefined);
    rmSync(workDir, { recursive: true, force: true });
  };
  try {
    const proxyPassword = randomBytes(18).toString('base64url');
    await prepareDatabase(cluster.superuserUrl, proxyPassword);

    const upstream = new URL(cluster.superuserUrl);
    upstream.username = PROXY_ROLE;
    upstream.password = proxyPassword;
    upstream.pathname = `/${DATABASE}`;
    const admin = new URL(cluster.superuserUrl);
    admin.pathname = `/${DATABASE}`;
    const config = loadConfig(DEMO_CONFIG, {
      ...process.env,
      PGTP_UPSTREAM_URL: upstream.toString(),
      PGTP_ADMIN_URL: admin.toString(),
      PGTP_AUTH_JWT_SECRET: process.env.PGTP_AUTH_JWT_SECRET ?? randomBytes(32).toString('hex'),
      PGTP_METRICS_ADMIN_TOKEN: process.env.PGTP_METRICS_ADMIN_TOKEN ?? randomBytes(24).toString('base64url'),
    });
    const configFile = join(workDir, 'demo.yaml');
    writeFileSync(configFile, stringify(config), { mode: 0o600 });
    await provisionTenants(config, admin.toString());
    const proxy = await startProxy(config, createLogger(config));

    const cli = `node ${fileURLToPath(new URL('./main.js', import.meta.url))}`;
    const lines = ['', 'pg-tenant-proxy demo is running. Connect as a tenant (each token is valid for 8 hours):', ''];
    for (const tenant of Object.keys(TENANTS)) {
      const token = await signDevToken(config, { tenant, sub: `demo-user@${tenant}`, ttlSeconds: 8 * 3600 });
      lines.push(`  # tenant ${tenant}`);
      lines.push(`  psql "postgresql://app:${token}@${proxy.host}:${proxy.port}/${DATABASE}?sslmode=disable"`);
      lines.push('');
    }
    lines.push('Try:  SELECT * FROM orders;   SHOW search_path;   SELECT * FROM tenant_globex.orders;  (refused)');
    lines.push(
      '',
      'Tenants are in the registry (tenancy.registry.enabled): suspend one and its sessions end, resume it:',
    );
    lines.push(`  ${cli} tenants list --config ${configFile}`);
    lines.push(`  ${cli} tenants suspend acme --reason "trying it out" --config ${configFile}`);
    lines.push(`  ${cli} tenants resume acme --config ${configFile}`);
    if (proxy.metricsPort !== null) {
      lines.push(
        '',
        `Metrics: curl http://127.0.0.1:${proxy.metricsPort}/metrics   Ready: curl http://127.0.0.1:${proxy.metricsPort}/readyz`,
      );
      lines.push(
        `Status:  curl -H "Authorization: Bearer ${config.metrics.adminToken}" http://127.0.0.1:${proxy.metricsPort}/admin/status`,
      );
    }
    lines.push('The audit trail follows on stdout, one JSON line per event.');
    lines.push('Press Ctrl-C to stop the proxy and remove the temporary cluster.', '');
    process.stdout.write(lines.join('\n') + '\n');

    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    process.stderr.write('stopping…\n');
    await proxy.close(2000);
  } finally {
    await stopCluster();
  }
  process.exit(0);
}

/** The database and the proxy's login role: what an operator sets up once (README, Preparing the database). */
async function prepareDatabase(superuserUrl: string, proxyPassword: string): Promise<void> {
  const admin = new pg.Client({ connectionString: superuserUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${DATABASE}`);
  } finally {
    await admin.end();
  }
  const dbUrl = new URL(superuserUrl);
  dbUrl.pathname = `/${DATABASE}`;
  const db = new pg.Client({ connectionString: dbUrl.toString() });
  await db.connect();
  try {
    await prepareProxyRole(db, { role: PROXY_ROLE, password: proxyPassword });
    await revokePublicDefaults(db, DATABASE, PROXY_ROLE);
  } finally {
    await db.end();
  }
}

/** Each tenant through `tenants create` (the lifecycle API), then an orders table with a few rows. */
async function provisionTenants(config: Config, adminUrl: string): Promise<void> {
  const tenants = await TenantAdmin.open(config, { actor: 'demo' });
  try {
    for (const tenant of Object.keys(TENANTS)) await tenants.create(tenant, { tier: 'demo' });
  } finally {
    await tenants.close();
  }
  const db = new pg.Client({ connectionString: adminUrl });
  await db.connect();
  try {
    for (const [tenant, rows] of Object.entries(TENANTS)) {
      const schema = `tenant_${tenant}`;
      await db.query(`CREATE TABLE ${schema}.orders (id int PRIMARY KEY, item text NOT NULL, status text NOT NULL)`);
      await db.query(`GRANT ALL ON ${schema}.orders TO ${PROXY_ROLE}`);
      for (const row of rows) await db.query(`INSERT INTO ${schema}.orders VALUES ($1, $2, $3)`, row);
    }
  } finally {
    await db.end();
  }
}
