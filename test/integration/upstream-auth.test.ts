import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateCluster, withDatabase, type PrivatePgFixture } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
let cluster: PrivatePgFixture;

afterEach(async () => {
  await tp?.close();
});

/** One login role per method, each matched by its own pg_hba line ahead of the cluster's SCRAM default. */
const METHODS = { md5: 'pgtp_md5', password: 'pgtp_clear', trust: 'pgtp_trust' } as const;

beforeAll(async () => {
  cluster = await startPrivateCluster();
  const hba = join(cluster.dataDir, 'pg_hba.conf');
  const lines = Object.entries(METHODS).map(([method, role]) => `host all ${role} 127.0.0.1/32 ${method}`);
  writeFileSync(hba, lines.join('\n') + '\n' + readFileSync(hba, 'utf8'));
  const db = new pg.Client({ connectionString: withDatabase(cluster.superuserUrl, cluster.database) });
  await db.connect();
  try {
    await db.query("SET password_encryption = 'md5'");
    for (const role of Object.values(METHODS)) {
      await db.query(`CREATE ROLE ${role} LOGIN PASSWORD 'secret-${role}'`);
      await db.query(`ALTER ROLE ${role} SET search_path = ''`);
      await db.query(`GRANT CONNECT ON DATABASE ${cluster.database} TO ${role}`);
      await db.query(`GRANT USAGE ON SCHEMA tenant_a TO ${role}`);
      await db.query(`GRANT SELECT ON ALL TABLES IN SCHEMA tenant_a TO ${role}`);
    }
    await db.query('SELECT pg_reload_conf()');
  } finally {
    await db.end();
  }
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

function urlFor(role: string, password: string | null): string {
  return `postgres://${role}${password === null ? '' : `:${password}`}@127.0.0.1:${cluster.port}/${cluster.database}`;
}

describe('authenticating to the upstream', () => {
  it('logs in with SCRAM-SHA-256', async () => {
    tp = await startTestProxy({}, cluster.upstreamUrl);
    const client = await tp.connect('a');
    expect((await client.query('SELECT current_user AS u')).rows[0].u).toBe('pgtp_proxy');
  });

  for (const [method, role] of Object.entries(METHODS)) {
    it(`logs in with ${method}`, async () => {
      tp = await startTestProxy({}, urlFor(role, method === 'trust' ? null : `secret-${role}`));
      const client = await tp.connect('a');
      const r = await client.query('SELECT current_user AS u, count(*)::int AS n FROM items');
      expect(r.rows[0]).toEqual({ u: role, n: 2 });
    });
  }

  it('takes the password from upstream.password over the URL', async () => {
    tp = await startTestProxy({ upstream: { password: cluster.proxyPassword } }, urlFor('pgtp_proxy', 'wrong'));
    const client = await tp.connect('a');
    expect((await client.query('SELECT 1 AS one')).rows[0].one).toBe(1);
  });

  it('gives clients a clear 08001 error at login when the upstream refuses the proxy', async () => {
    tp = await startTestProxy({}, urlFor('pgtp_proxy', 'wrong-password'));
    // Login itself needs the upstream's parameters, so the refusal shows at connect.
    expect(await sqlstateOf(() => tp.connect('a'))).toMatch(/^08/);
  });
});
