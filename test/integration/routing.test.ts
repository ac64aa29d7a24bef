// The routing table across two real clusters: each tenant's transactions go to its upstream's pool, routes follow
// the registry, one upstream down fails only its tenants, and the tenant commands act on each tenant's cluster.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { provisionTenant } from '../../src/tenants/provision.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { sqlstateOf, startTestProxy, TEST_SECRET, type TestProxy } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';
import { startUpstreamCluster, type UpstreamCluster } from '../support/upstream.js';

let rdb: RegistryDatabase;
let b: UpstreamCluster;
let dir: string;
let tp: TestProxy | null = null;

beforeAll(async () => {
  await buildDist();
  rdb = await createRegistryDatabase('pgtp_routes');
  b = await startUpstreamCluster('pgtp_routes_b', 'pgtp_routes_b_proxy');
  dir = mkdtempSync(join(os.tmpdir(), 'pgtp-routes-'));
}, 180_000);

afterAll(async () => {
  await b?.stop();
  await rdb?.drop(['tenant_rt_']);
});

afterEach(async () => {
  await tp?.close();
  tp = null;
});

function configInput(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstream: { url: rdb.upstreamUrl, poolSize: 2 },
    upstreams: { b: { url: b.upstreamUrl, adminUrl: b.adminUrl, poolSize: 2 } },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { roles: true, registry: { enabled: true } },
    admin: { url: rdb.adminUrl },
    audit: { file: join(dir, 'audit.log') },
    ...extra,
  };
}

function writeConfig(name: string, extra: Record<string, unknown> = {}): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(configInput(extra)));
  return file;
}

function routedProxy(): Promise<TestProxy> {
  return startTestProxy(
    {
      upstream: { url: rdb.upstreamUrl, poolSize: 2 },
      upstreams: { b: { url: b.upstreamUrl, adminUrl: b.adminUrl, poolSize: 2 } },
      tenancy: { roles: true, registry: { enabled: true } },
      admin: { url: rdb.adminUrl },
    },
    rdb.upstreamUrl,
  );
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DIST_CLI, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function withAdmin<T>(work: (admin: TenantAdmin) => Promise<T>): Promise<T> {
  const admin = await TenantAdmin.open(validateConfig(configInput()), { actor: 'routing-test' });
  try {
    return await work(admin);
  } finally {
    await admin.close();
  }
}

/** Runs SQL as the superuser of a cluster's database. */
async function onCluster(connect: () => Promise<pg.Client>, sql: string, values?: unknown[]): Promise<unknown[]> {
  const client = await connect();
  try {
    return (await client.query(sql, values)).rows;
  } finally {
    await client.end();
  }
}

/** A table in the tenant's schema on one cluster with one row naming that cluster, owned by the tenant's role. */
async function plant(connect: () => Promise<pg.Client>, tenant: string, where: string): Promise<void> {
  const schema = `tenant_${tenant}`;
  await onCluster(connect, `CREATE TABLE ${schema}.marker (cluster text)`);
  await onCluster(connect, `INSERT INTO ${schema}.marker VALUES ($1)`, [where]);
  await onCluster(connect, `ALTER TABLE ${schema}.marker OWNER TO ${schema}`);
}

async function waitFor(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const onDefault = (): Promise<pg.Client> => rdb.connect();
const onB = (): Promise<pg.Client> => b.connect();

const portOf = async (client: pg.Client): Promise<number> =>
  Number((await client.query<{ port: string }>("SELECT current_setting('port') AS port")).rows[0]!.port);

// Two tenants every test may use: one shared on default, one dedicated on b, each with a row naming its cluster.
beforeAll(async () => {
  await withAdmin(async (admin) => {
    await admin.create('rt_shared');
    await admin.create('rt_vip', { upstream: 'b', dedicated: true });
  });
  await plant(onDefault, 'rt_shared', 'default');
  await plant(onB, 'rt_vip', 'b');
}, 60_000);

describe('routing table', () => {
  it('routing by placement: a shared tenant runs on default, a dedicated one on its own cluster, each seeing only its own', async () => {
    tp = await routedProxy();
    const shared = await tp.connect('rt_shared');
    const vip = await tp.connect('rt_vip');
    expect((await shared.query('SELECT cluster FROM marker')).rows).toEqual([{ cluster: 'default' }]);
    expect((await vip.query('SELECT cluster FROM marker')).rows).toEqual([{ cluster: 'b' }]);
    expect(await portOf(vip)).toBe(b.port);
    expect(await portOf(shared)).not.toBe(b.port);
    // The client named one database, the default upstream's, whichever cluster serves it.
    expect((await vip.query('SELECT current_database() AS db')).rows[0]).toEqual({ db: 'pgtp_routes_b' });
    const stats = tp.proxy.status().upstreams.map((u) => u.upstream);
    expect(stats).toEqual(['default', 'b']);
    expect(
      tp.proxy
        .status()
        .clients.map((c) => [c.tenant, c.upstream])
        .sort(),
    ).toEqual([
      ['rt_shared', 'default'],
      ['rt_vip', 'b'],
    ]);
  });

  it("a tenant on b reaches neither the registry nor default's tenants: refused by the guard, absent on its cluster", async () => {
    tp = await routedProxy();
    const vip = await tp.connect('rt_vip');
    expect(await sqlstateOf(() => vip.query('SELECT * FROM pgtp.tenants'))).toBe('42501');
    expect(await sqlstateOf(() => vip.query('SELECT * FROM tenant_rt_shared.marker'))).toBe('42501');
    // What PostgreSQL itself says on b (a role of b, a cluster without the registry), guard aside.
    const rows = (await onCluster(
      onB,
      "SELECT to_regnamespace('pgtp') IS NULL AS no_registry, to_regnamespace('tenant_rt_shared') IS NULL AS no_other",
    )) as Array<{ no_registry: boolean; no_other: boolean }>;
    expect(rows).toEqual([{ no_registry: true, no_other: true }]);
  });

  it('one upstream stopped: its tenants get 08001 naming it, the others keep working, readiness reports each', async () => {
    tp = await routedProxy();
    const shared = await tp.connect('rt_shared');
    await b.cluster.pause();
    try {
      const err = (await tp.connect('rt_vip').then(
        () => null,
        (e: unknown) => e,
      )) as { code?: string; message: string } | null;
      expect(err?.code).toBe('08001');
      expect(err?.message).toMatch(/upstream "b"/);
      expect((await shared.query('SELECT cluster FROM marker')).rows).toEqual([{ cluster: 'default' }]);
      const fresh = await tp.connect('rt_shared');
      expect((await fresh.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
      await new Promise((r) => setTimeout(r, 1100)); // past the readiness cache
      const ready = await tp.proxy.readiness();
      expect(ready.ready).toBe(true);
      expect(ready.checks['upstream']?.ok).toBe(true);
      expect(ready.checks['upstream:b']?.ok).toBe(false);
    } finally {
      await b.cluster.resume();
    }
    // The pool heals when b is back.
    await waitFor(
      async () => {
        try {
          const vip = await tp!.connect('rt_vip');
          return (await vip.query('SELECT cluster FROM marker')).rows[0]?.cluster === 'b';
        } catch {
          return false;
        }
      },
      'b to serve again',
      15_000,
    );
  }, 60_000);

  it("a route changed in the registry reaches a running proxy: the same session's next transaction runs on the new upstream", async () => {
    await withAdmin((admin) => admin.create('rt_mover'));
    await plant(onDefault, 'rt_mover', 'default');
    // The copy a move would make, by hand: role, schema and data on b.
    const client = await b.connect();
    try {
      await provisionTenant(client, { schema: 'tenant_rt_mover', role: 'tenant_rt_mover', proxyRole: b.proxyRole });
    } finally {
      await client.end();
    }
    await plant(onB, 'rt_mover', 'b');
    tp = await routedProxy();
    const mover = await tp.connect('rt_mover');
    // A LISTEN-only connection of the tenant: it runs no transaction after the move, yet must hear the tenant there.
    const listener = await tp.connect('rt_mover');
    const heard: string[] = [];
    listener.on('notification', (n) => heard.push(`${n.channel}:${n.payload ?? ''}`));
    await listener.query('LISTEN moves');
    expect((await mover.query('SELECT cluster FROM marker')).rows).toEqual([{ cluster: 'default' }]);
    await onCluster(onDefault, "UPDATE pgtp.tenants SET upstream = 'b' WHERE id = 'rt_mover'");
    await waitFor(
      async () => (await mover.query('SELECT cluster FROM marker')).rows[0]?.cluster === 'b',
      'the route change to reach the session',
    );
    expect(await portOf(mover)).toBe(b.port);
    await waitFor(async () => {
      await mover.query("NOTIFY moves, 'on b'");
      return heard.includes('moves:on b');
    }, 'the listener to hear its tenant on the new upstream');
    await listener.end();
    // A route to an upstream this proxy's config lacks: FATAL at login, naming it.
    await onCluster(onDefault, "UPDATE pgtp.tenants SET upstream = 'nowhere' WHERE id = 'rt_mover'");
    await waitFor(async () => {
      const e = (await tp!.connect('rt_mover').then(
        (c) => c.end().then(() => null),
        (err: unknown) => err,
      )) as { code?: string; message: string } | null;
      return e?.code === '08001' && /upstream "nowhere"/.test(e.message);
    }, 'the login to be refused');
  });

  it('pool metrics carry the upstream label', async () => {
    tp = await routedProxy();
    const text = await tp.proxy.metrics.text();
    expect(text).toMatch(/^pgtp_pool_size\{upstream="default"\} 2$/m);
    expect(text).toMatch(/^pgtp_pool_size\{upstream="b"\} 2$/m);
  });
});

describe('tenant commands across upstreams', () => {
  it('create --upstream, route, and a bad upstream name (exit 2 naming the configured ones)', async () => {
    const config = writeConfig('cli.yaml');
    const created = await cli(['tenants', 'create', 'rt_cli', '--upstream', 'b', '--dedicated', '--config', config]);
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toMatch(/created tenant rt_cli .*upstream b, dedicated/);
    const schemaOnB = await onCluster(onB, "SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_rt_cli'");
    expect(schemaOnB).toHaveLength(1);
    const schemaOnDefault = await onCluster(onDefault, "SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_rt_cli'");
    expect(schemaOnDefault).toHaveLength(0);
    const route = await cli(['tenants', 'route', 'rt_cli', '--config', config]);
    expect(route).toMatchObject({ code: 0, stderr: '' });
    expect(route.stdout).toMatch(/^upstream\s+b$/m);
    expect(route.stdout).toMatch(/^database\s+pgtp_routes_b$/m);
    expect(route.stdout).toMatch(/^placement\s+dedicated$/m);
    const json = await cli(['tenants', 'route', 'rt_cli', '--json', '--config', config]);
    expect(JSON.parse(json.stdout)).toMatchObject({ upstream: 'b', database: 'pgtp_routes_b', placement: 'dedicated' });
    // Not yet upstream-aware: refused, rather than dropped and certified on the wrong cluster.
    const del = await cli(['tenants', 'delete', 'rt_cli', '--yes', '--config', config]);
    expect(del.code).toBe(1);
    expect(del.stderr).toMatch(/tenant "rt_cli" is on upstream "b"; delete acts on the default upstream only/);
    const still = await onCluster(onDefault, "SELECT status FROM pgtp.tenants WHERE id = 'rt_cli'");
    expect(still).toEqual([{ status: 'active' }]);
    const bad = await cli(['tenants', 'create', 'rt_nowhere', '--upstream', 'nowhere', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/no upstream "nowhere" in the configuration \(configured: default, b\)/);
  }, 60_000);

  it('tenants query asks each tenant on its own upstream; catalog install installs on every upstream with an adminUrl', async () => {
    const config = writeConfig('query.yaml');
    const run = await cli([
      'tenants',
      'query',
      '--config',
      config,
      "SELECT cluster, current_setting('port')::int AS port FROM marker",
      '--tenants',
      'rt_shared,rt_vip',
      '--format',
      'json',
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const rows = JSON.parse(run.stdout) as Array<{ tenant: string; cluster: string; port: number }>;
    expect(rows.map((r) => [r.tenant, r.cluster])).toEqual([
      ['rt_shared', 'default'],
      ['rt_vip', 'b'],
    ]);
    expect(rows[1]!.port).toBe(b.port);
    const install = await cli(['catalog', 'install', '--config', config]);
    expect(install).toMatchObject({ code: 0, stderr: '' });
    expect(install.stdout).toMatch(
      /^catalog filter already at version \d+\nupstream b: catalog filter already at version \d+\n$/,
    );
  }, 60_000);

  it('a config error names the key: an upstream called default, an adminUrl on the wrong database', async () => {
    const named = await cli([
      'check-config',
      '--config',
      writeConfig('bad1.yaml', { upstreams: { default: { url: b.upstreamUrl } } }),
    ]);
    expect(named.code).not.toBe(0);
    expect(named.stderr).toMatch(/upstreams/);
    const wrongDb = await cli([
      'check-config',
      '--config',
      writeConfig('bad2.yaml', {
        upstreams: { b: { url: b.upstreamUrl, adminUrl: b.adminUrl.replace('pgtp_routes_b', 'postgres') } },
      }),
    ]);
    expect(wrongDb.code).not.toBe(0);
    expect(wrongDb.stderr).toMatch(/upstreams\.b\.adminUrl/);
  });

  it('migrate reaches tenants on both upstreams and records them in the one registry', async () => {
    const migrations = join(dir, 'migrations');
    mkdirSync(migrations, { recursive: true });
    writeFileSync(join(migrations, '0001_widgets.sql'), 'CREATE TABLE public.widgets (id int PRIMARY KEY);\n');
    await withAdmin(async (admin) => {
      await admin.create('rt_m_a');
      await admin.create('rt_m_b', { upstream: 'b' });
    });
    const config = writeConfig('migrate.yaml');
    const run = await cli(['migrate', '--dir', migrations, '--tenants', 'rt_m_a,rt_m_b', '--json', '--config', config]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const report = JSON.parse(run.stdout) as { succeeded: Array<{ tenant: string }> };
    expect(report.succeeded.map((s) => s.tenant)).toEqual(['rt_m_a', 'rt_m_b']);
    const where = async (connect: () => Promise<pg.Client>): Promise<string[]> =>
      (
        (await onCluster(
          connect,
          "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'widgets' AND n.nspname LIKE 'tenant_rt_m_%' ORDER BY 1",
        )) as Array<{ nspname: string }>
      ).map((r) => r.nspname);
    expect(await where(onDefault)).toEqual(['tenant_rt_m_a']);
    expect(await where(onB)).toEqual(['tenant_rt_m_b']);
    const tracked = (await onCluster(
      onDefault,
      "SELECT tenant_id FROM pgtp.tenant_migrations WHERE tenant_id LIKE 'rt_m_%' ORDER BY 1",
    )) as Array<{ tenant_id: string }>;
    expect(tracked.map((r) => r.tenant_id)).toEqual(['rt_m_a', 'rt_m_b']);
    // Owned by the tenant's role on b, as the proxy pins it there.
    const owner = await onCluster(
      onB,
      "SELECT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE oid = 'tenant_rt_m_b.widgets'::regclass",
    );
    expect(owner).toEqual([{ owner: 'tenant_rt_m_b' }]);
  }, 60_000);
});
