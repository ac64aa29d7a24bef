// Shared by the stand-alone benches: a throwaway database with a proxy role and tenant schemas, and the proxy as its
// own process (`pg-tenant-proxy start`), so its RSS and CPU are its own. Run after `npm run build`.
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { signDevToken } from '../dist/auth/sign-token.js';
import { prepareProxyRole, provisionTenant, revokePublicDefaults } from '../dist/tenants/provision.js';

const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/**
 * Creates `database` on the cluster with login role px (password pw) and one schema per tenant id; `each(db, schema)`
 * runs after each schema is provisioned. Returns the upstream URL for the proxy.
 */
export async function scratchDatabase(cluster, database, tenantIds, each = async () => undefined) {
  const admin = new pg.Client({ connectionString: cluster.superuserUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${database}`);
  await admin.end();
  const url = new URL(cluster.superuserUrl);
  url.pathname = `/${database}`;
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  try {
    await prepareProxyRole(db, { role: 'px', password: 'pw' });
    await revokePublicDefaults(db, database, 'px');
    for (const id of tenantIds) {
      const schema = `tenant_${id}`;
      await provisionTenant(db, { schema, role: null, proxyRole: 'px' });
      await each(db, schema);
    }
  } finally {
    await db.end();
  }
  return `postgres://px:pw@127.0.0.1:${cluster.port}/${database}`;
}

/**
 * Starts the proxy with this raw config (log.level must be info or lower: the port comes from its "listening"
 * line). Afterwards only warnings, errors and the drain line are echoed, prefixed "proxy:".
 */
export async function startProxyProcess(raw, work) {
  const file = join(work, 'proxy.json');
  writeFileSync(file, JSON.stringify(raw));
  const child = spawn(process.execPath, [CLI, 'start', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise((resolve, reject) => {
    let head = '';
    const onData = (chunk) => {
      head += chunk;
      const match = /"port":(\d+),"msg":"listening"/.exec(head);
      if (match === null) return;
      child.stderr.off('data', onData);
      child.stderr.on('data', (line) => {
        if (/"level":(40|50|60)|draining/.test(String(line))) process.stderr.write(`proxy: ${line}`);
      });
      resolve(Number(match[1]));
    };
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`proxy exited ${code}: ${head}`)));
  });
  return { child, port };
}

/** libpq's environment for a client of `tenant` on the proxy at `port`, with a token signed under `config`. */
export async function tenantEnv(config, port, database, tenant) {
  return {
    ...process.env,
    PGHOST: '127.0.0.1',
    PGPORT: String(port),
    PGUSER: 'app',
    PGDATABASE: database,
    PGPASSWORD: await signDevToken(config, { tenant, ttlSeconds: 3600 }),
    PGSSLMODE: 'disable',
  };
}

/** Runs pgbench and resolves with everything it printed, whatever its exit status (the callers parse it). */
export function pgbench(args, env) {
  return new Promise((done) => execFile('pgbench', args, { env }, (err, out, errOut) => done(`${out}${errOut}`)));
}
