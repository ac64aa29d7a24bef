// The proxy admits by the tenant registry: unknown and suspended tenants refused (28000), suspension ends sessions
// after their transaction in this and in other proxy processes within 2 s, and no tenant can reach the registry.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createTenant, resumeTenant, showTenant, suspendTenant } from '../../src/tenants/lifecycle-api.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { sqlstateOf, startTestProxy, TEST_SECRET, type TestProxy } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

let rdb: RegistryDatabase;
let tp: TestProxy | null = null;
let child: ChildProcess | null = null;

beforeAll(async () => {
  rdb = await createRegistryDatabase('pgtp_registry');
}, 60_000);

afterAll(async () => {
  await rdb?.drop(['tenant_reg_']);
});

afterEach(async () => {
  child?.kill('SIGKILL');
  child = null;
  await tp?.close();
  tp = null;
});

const ACTOR = { actor: 'registry-test' };

function registryProxy(
  extra: {
    roles?: boolean;
    checkNames?: boolean;
    metricsPort?: number;
    poolSize?: number;
    withdrawTimeoutMs?: number;
  } = {},
): Promise<TestProxy> {
  return startTestProxy(
    {
      ...(extra.poolSize !== undefined && { upstream: { url: rdb.upstreamUrl, poolSize: extra.poolSize } }),
      tenancy: {
        registry: {
          enabled: true,
          ...(extra.withdrawTimeoutMs !== undefined && { withdrawTimeoutMs: extra.withdrawTimeoutMs }),
        },
        roles: extra.roles ?? false,
      },
      policy: { checkNames: extra.checkNames ?? true },
      admin: { url: rdb.adminUrl },
      ...(extra.metricsPort !== undefined && {
        metrics: { enabled: true, port: extra.metricsPort, adminToken: 'registry-test-admin-token' },
      }),
    },
    rdb.upstreamUrl,
  );
}

/** The error a connection attempt ends with (the test fails if it connects). */
async function loginError(proxy: TestProxy, tenant: string): Promise<{ code?: string; message: string }> {
  try {
    const client = await proxy.connect(tenant);
    await client.end();
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error(`tenant ${tenant} was admitted`);
}

/** Resolves with the error the connection ends with and how long after `since` it came. */
function ended(client: pg.Client, since: () => number): Promise<{ code?: string; message: string; afterMs: number }> {
  return new Promise((resolve) => {
    client.on('error', (err: Error & { code?: string }) =>
      resolve({ code: err.code, message: err.message, afterMs: Date.now() - since() }),
    );
  });
}

describe('admission by the registry', () => {
  it('starts without a registry and admits nobody; a tenant is admitted as soon as create returns; unknown and suspended tenants get 28000', async () => {
    tp = await registryProxy();
    // No registry yet: the proxy runs, and refuses.
    expect(await loginError(tp, 'reg_early')).toMatchObject({
      code: '28000',
      message: 'tenant "reg_early" is not registered',
    });

    const created = await createTenant(tp.config, 'reg_a', { ...ACTOR, tier: 'pro' });
    expect(created.outcome).toBe('created');
    const a = await tp.connect('reg_a');
    expect((await a.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_reg_a');

    // A tenant refused a moment ago is admitted once created (its NOTIFY clears the negative answer).
    await createTenant(tp.config, 'reg_early', ACTOR);
    const early = await eventually(() => tp!.connect('reg_early'));
    await early.end();

    expect(await loginError(tp, 'reg_nobody')).toMatchObject({
      code: '28000',
      message: 'tenant "reg_nobody" is not registered',
    });

    await suspendTenant(tp.config, 'reg_a', 'unpaid invoice', ACTOR);
    expect(await loginError(tp, 'reg_a')).toMatchObject({
      code: '28000',
      message: 'tenant "reg_a" is suspended: unpaid invoice',
    });
    await resumeTenant(tp.config, 'reg_a', ACTOR);
    const again = await eventually(() => tp!.connect('reg_a'));
    expect((await again.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_reg_a');
  });

  it('a suspension lets the transaction in flight commit, ends idle sessions at once, refuses the next statement and login; resume admits again', async () => {
    // A fixed port: `tenants show` finds the proxy's admin view through the config, as the CLI would.
    tp = await registryProxy({ metricsPort: await freePort() });
    await createTenant(tp.config, 'reg_c', ACTOR);
    const admin = await rdb.connect();
    try {
      await admin.query('CREATE TABLE tenant_reg_c.notes (n int)');
      const inTx = await tp.connect('reg_c');
      const idle = await tp.connect('reg_c');
      const other = await tp.connect('reg_a');
      expect((await showTenant(tp.config, 'reg_c', ACTOR)).connectedClients).toBe(2);
      await inTx.query('BEGIN');
      await inTx.query('INSERT INTO notes VALUES (1)');

      // Measured from the call: the proxy may hear of the change before the call has returned.
      const suspendedAt = Date.now();
      const idleEnd = ended(idle, () => suspendedAt);
      const inTxEnd = ended(inTx, () => suspendedAt);
      await suspendTenant(tp.config, 'reg_c', 'unpaid invoice', ACTOR);

      const idleError = await idleEnd;
      expect(idleError).toMatchObject({ code: '28000', message: 'tenant "reg_c" is suspended: unpaid invoice' });
      expect(idleError.afterMs).toBeLessThan(2000);
      // The transaction goes on to its end, whole.
      await inTx.query('INSERT INTO notes VALUES (2)');
      await inTx.query('COMMIT');
      expect(await inTxEnd).toMatchObject({ code: '28000', message: 'tenant "reg_c" is suspended: unpaid invoice' });
      await expect(inTx.query('SELECT 1')).rejects.toThrow();
      expect((await admin.query('SELECT count(*)::int AS n FROM tenant_reg_c.notes')).rows[0].n).toBe(2);
      expect(await loginError(tp, 'reg_c')).toMatchObject({ code: '28000' });
      // Other tenants are not touched.
      expect((await other.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_reg_a');

      await resumeTenant(tp.config, 'reg_c', ACTOR);
      const back = await eventually(() => tp!.connect('reg_c'));
      expect((await back.query('SELECT count(*)::int AS n FROM notes')).rows[0].n).toBe(2);
    } finally {
      await admin.end();
    }
  });

  it('a statement waiting for a server when its tenant is suspended never runs: the client gets the suspension', async () => {
    tp = await registryProxy({ poolSize: 1 });
    await createTenant(tp.config, 'reg_w', ACTOR);
    await createTenant(tp.config, 'reg_h', ACTOR);
    const admin = await rdb.connect();
    try {
      await admin.query('CREATE TABLE tenant_reg_w.notes (n int)');
      const holder = await tp.connect('reg_h');
      const waiting = await tp.connect('reg_w');
      waiting.on('error', () => undefined);
      await holder.query('BEGIN');
      await holder.query('SELECT 1');
      // The pool's one server is held: this waits for it.
      const insert = waiting.query('INSERT INTO notes VALUES (9)').catch((err: Error & { code?: string }) => err);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await suspendTenant(tp.config, 'reg_w', 'testing the queue', ACTOR);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await holder.query('COMMIT');
      expect(await insert).toMatchObject({ code: '28000', message: 'tenant "reg_w" is suspended: testing the queue' });
      expect((await admin.query('SELECT count(*)::int AS n FROM tenant_reg_w.notes')).rows[0].n).toBe(0);
    } finally {
      await admin.end();
    }
  });

  it('a transaction held open past tenancy.registry.withdrawTimeoutMs after the suspension is ended and rolled back', async () => {
    tp = await registryProxy({ withdrawTimeoutMs: 500 });
    await createTenant(tp.config, 'reg_o', ACTOR);
    const admin = await rdb.connect();
    try {
      await admin.query('CREATE TABLE tenant_reg_o.notes (n int)');
      const holder = await tp.connect('reg_o');
      await holder.query('BEGIN');
      await holder.query('INSERT INTO notes VALUES (1)');
      const suspendedAt = Date.now();
      const end = ended(holder, () => suspendedAt);
      await suspendTenant(tp.config, 'reg_o', 'overdue', ACTOR);
      const error = await end;
      expect(error).toMatchObject({ code: '28000', message: 'tenant "reg_o" is suspended: overdue' });
      expect(error.afterMs).toBeGreaterThanOrEqual(400);
      expect(error.afterMs).toBeLessThan(5000);
      // Its transaction never committed.
      expect((await admin.query('SELECT count(*)::int AS n FROM tenant_reg_o.notes')).rows[0].n).toBe(0);
    } finally {
      await admin.end();
    }
  });

  it("another proxy process (with two workers) sharing the registry ends a suspended tenant's sessions within 2 s, through NOTIFY and, without it, through polling", async () => {
    await buildDist();
    tp = await registryProxy();
    const port = await startChildProxy();
    await createTenant(tp.config, 'reg_d', ACTOR);
    const remote = async (): Promise<pg.Client> => {
      const client = new pg.Client({ ...(await tp!.clientConfig('reg_d')), port });
      client.on('error', () => undefined);
      await client.connect();
      return client;
    };
    // Two clients of the other process: its two workers take one each (round robin).
    const clients = [await tp.connect('reg_d'), await eventually(remote), await remote()];
    let suspendedAt = Date.now();
    const ends = clients.map((c) => ended(c, () => suspendedAt));
    await suspendTenant(tp.config, 'reg_d', 'moved away', ACTOR);
    for (const end of await Promise.all(ends)) {
      expect(end).toMatchObject({ code: '28000', message: 'tenant "reg_d" is suspended: moved away' });
      expect(end.afterMs).toBeLessThan(2000);
    }
    expect(await sqlstateOf(remote)).toBe('28000');

    // A change that sends no NOTIFY (triggers off) reaches the proxies through the change counter they poll.
    await resumeTenant(tp.config, 'reg_d', ACTOR);
    const polled = [await eventually(() => tp!.connect('reg_d')), await eventually(remote)];
    const admin = await rdb.connect();
    try {
      const silentEnds = polled.map((c) => ended(c, () => suspendedAt));
      suspendedAt = Date.now();
      await admin.query('BEGIN');
      await admin.query('SET LOCAL session_replication_role = replica');
      await admin.query(
        "UPDATE pgtp.tenants SET status = 'suspended', suspended_reason = 'silently' WHERE id = 'reg_d'",
      );
      await admin.query('UPDATE pgtp.registry_state SET change_count = change_count + 1');
      await admin.query('COMMIT');
      for (const end of await Promise.all(silentEnds)) {
        expect(end).toMatchObject({ code: '28000', message: 'tenant "reg_d" is suspended: silently' });
        expect(end.afterMs).toBeLessThan(2000);
      }
    } finally {
      await admin.end();
    }
  });
});

describe("the registry is out of every tenant's reach", () => {
  it('the guard refuses naming it, with the registry on', async () => {
    tp = await registryProxy();
    await createTenant(tp.config, 'reg_e', ACTOR);
    const e = await tp.connect('reg_e');
    for (const sql of [
      'SELECT * FROM pgtp.tenants',
      'SELECT * FROM "pgtp"."tenants"',
      'TABLE pgtp.events',
      'SELECT change_count FROM pgtp.registry_state',
      "SELECT 'pgtp.tenants'::regclass",
      "SELECT * FROM pg_catalog.pg_class WHERE relnamespace = 'pgtp'::regnamespace",
      'INSERT INTO pgtp.tenants (id, schema_name) VALUES ($1, $2)',
    ]) {
      const params = sql.includes('$1') ? ['reg_x', 'tenant_reg_x'] : undefined;
      expect({ sql, code: await sqlstateOf(() => e.query(sql, params)) }).toEqual({ sql, code: '42501' });
    }
    // Its change channel is out of reach too: a tenant's channels are its own (namespaced), so NOTIFY and LISTEN of
    // that name run, in the tenant's namespace, and the registry's listener never hears them.
    const direct = new pg.Client({ connectionString: tp.config.upstream.url, password: tp.config.upstream.password });
    await direct.connect();
    try {
      const heard: string[] = [];
      direct.on('notification', (n) => heard.push(n.payload ?? ''));
      await direct.query('LISTEN pgtp_changes');
      await e.query('LISTEN pgtp_changes');
      await e.query("NOTIFY pgtp_changes, 'reg_e'");
      // pg_notify goes through the catalog filter's wrapper: namespaced where the lifecycle installed the filter in
      // this database, refused (never sent raw) where it did not.
      await e.query("SELECT pg_catalog.pg_notify('pgtp_changes', 'reg_e')").catch(() => undefined);
      await direct.query("NOTIFY pgtp_changes, 'probe'");
      await eventually(() => Promise.resolve().then(() => expect(heard).toEqual(['probe'])));
    } finally {
      await direct.end();
    }
    // Refusals cost the session nothing.
    expect((await e.query('SELECT current_schema() AS s')).rows[0].s).toBe('tenant_reg_e');
  });

  it('PostgreSQL refuses it to a tenant role when the name checks are off, and the proxy role reads only what admission needs', async () => {
    tp = await registryProxy({ roles: true, checkNames: false });
    const admin = await TenantAdmin.open(tp.config, ACTOR);
    try {
      await admin.create('reg_f');
    } finally {
      await admin.close();
    }
    const f = await tp.connect('reg_f');
    expect((await f.query('SELECT current_user AS u')).rows[0].u).toBe('tenant_reg_f');
    for (const sql of [
      'SELECT * FROM pgtp.tenants',
      'SELECT * FROM pgtp.events',
      'SELECT * FROM pgtp.registry_state',
    ]) {
      expect({ sql, code: await sqlstateOf(() => f.query(sql)) }).toEqual({ sql, code: '42501' });
    }
    // The proxy's own login role (what admission reads with) may read tenants, not the events or certificates.
    const proxyRole = new pg.Client({ connectionString: rdb.upstreamUrl });
    await proxyRole.connect();
    try {
      expect((await proxyRole.query("SELECT status FROM pgtp.tenants WHERE id = 'reg_f'")).rows).toEqual([
        { status: 'active' },
      ]);
      expect(await sqlstateOf(() => proxyRole.query('SELECT * FROM pgtp.events'))).toBe('42501');
      expect(await sqlstateOf(() => proxyRole.query('SELECT * FROM pgtp.deletion_certificates'))).toBe('42501');
      expect(await sqlstateOf(() => proxyRole.query("UPDATE pgtp.tenants SET status = 'active'"))).toBe('42501');
    } finally {
      await proxyRole.end();
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Retries fn (a login racing a NOTIFY, a proxy still starting) for up to 2 s. */
async function eventually<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 2000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

/** `pg-tenant-proxy start` with listen.workers 2 on the same registry; resolves with its port. */
function startChildProxy(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'pgtp-registry-'));
  const file = join(dir, 'proxy.yaml');
  writeFileSync(
    file,
    stringify({
      listen: { host: '127.0.0.1', port: 0, workers: 2 },
      upstream: { url: rdb.upstreamUrl, poolSize: 2 },
      auth: { jwt: { secret: TEST_SECRET } },
      tenancy: { registry: { enabled: true } },
      audit: { file: join(dir, 'audit.log') },
      log: { level: 'info' },
    }),
  );
  return new Promise((resolve, reject) => {
    child = spawn(process.execPath, [DIST_CLI, 'start', '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let buffered = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const match = /"port":(\d+),"msg":"listening"/.exec(buffered);
      if (match) resolve(Number(match[1]));
    });
    child.on('exit', (code) => reject(new Error(`exited with ${code}: ${buffered}`)));
  });
}
