import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateCluster, withDatabase, type PrivatePgFixture } from '../support/postgres.js';
import { selfSignedCert } from '../support/certs.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
let cluster: PrivatePgFixture;
/** The certificate the cluster serves TLS with (CN localhost, SAN 127.0.0.1): the CA for verify-full. */
let serverCert: string;

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
    // TLS on the cluster, with a certificate the postgres OS user owns (PostgreSQL checks the key's owner and mode).
    const { cert, key } = selfSignedCert('localhost');
    serverCert = cert;
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    for (const [from, to] of [
      [cert, 'server.crt'],
      [key, 'server.key'],
    ] as const) {
      const path = join(cluster.dataDir, to);
      copyFileSync(from, path);
      if (process.getuid?.() === 0) chownSync(path, uid, gid);
      chmodSync(path, 0o600);
    }
    await db.query('ALTER SYSTEM SET ssl = on');
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

  it('speaks TLS to the upstream with verify-full and binds SCRAM to it (SCRAM-SHA-256-PLUS)', async () => {
    tp = await startTestProxy(
      { upstream: { tls: { mode: 'verify-full', ca: serverCert, channelBinding: 'require' } } },
      cluster.upstreamUrl.replace('127.0.0.1', 'localhost'),
    );
    const client = await tp.connect('a');
    expect((await client.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
    const db = new pg.Client({ connectionString: withDatabase(cluster.superuserUrl, cluster.database) });
    await db.connect();
    try {
      // By role: a server parked for its client shows the client's application_name, not the proxy's.
      const { rows } = await db.query(
        'SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1',
        [cluster.proxyRole],
      );
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.every((r) => r.ssl === true)).toBe(true);
    } finally {
      await db.end();
    }
  });

  it('refuses an upstream whose certificate the configured CA did not sign (verify-full)', async () => {
    const other = selfSignedCert('localhost');
    tp = await startTestProxy(
      { upstream: { connectTimeoutMs: 2000, tls: { mode: 'verify-full', ca: other.cert } } },
      cluster.upstreamUrl.replace('127.0.0.1', 'localhost'),
    );
    expect(await sqlstateOf(() => tp.connect('a'))).toMatch(/^08/);
  });

  it('with channelBinding require, refuses to log in without TLS or with a method that cannot bind', async () => {
    tp = await startTestProxy(
      { upstream: { tls: { mode: 'disable', channelBinding: 'require' } } },
      cluster.upstreamUrl,
    );
    const err = await tp.connect('a').catch((e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({ code: expect.stringMatching(/^08/) });
    expect((err as Error).message).toContain('channel binding');
    await tp.close();
    tp = await startTestProxy(
      { upstream: { tls: { mode: 'require', channelBinding: 'require' } } },
      urlFor(METHODS.md5, `secret-${METHODS.md5}`),
    );
    const md5 = await tp.connect('a').catch((e: unknown) => e as pg.DatabaseError);
    expect((md5 as Error).message).toContain('channel binding');
  });

  it('gives clients a clear 08001 error at login when the upstream refuses the proxy', async () => {
    tp = await startTestProxy({}, urlFor('pgtp_proxy', 'wrong-password'));
    // Login itself needs the upstream's parameters, so the refusal shows at connect.
    expect(await sqlstateOf(() => tp.connect('a'))).toMatch(/^08/);
  });
});
