import pg from 'pg';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { provisionTenant } from '../../src/tenants/provision.js';
import { withDatabase } from '../support/postgres.js';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

const rolesProxy = (checkNames: boolean): Promise<TestProxy> =>
  startTestProxy(
    { upstream: { poolSize: 1 }, tenancy: { roles: true }, policy: { checkNames } },
    inject('pgRoles').upstreamUrl,
  );

describe('tenancy.roles: the database as the second line', () => {
  it('pins SET ROLE with the search_path and resets both', async () => {
    tp = await rolesProxy(true);
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    for (let i = 0; i < 3; i++) {
      expect((await a.query('SELECT current_user AS u, count(*)::int AS n FROM items')).rows[0]).toEqual({
        u: 'tenant_a',
        n: 2,
      });
      expect((await b.query('SELECT current_user AS u, count(*)::int AS n FROM items')).rows[0]).toEqual({
        u: 'tenant_b',
        n: 3,
      });
    }
  });

  it('stops what no parser sees when the name checks are off: names inside strings', async () => {
    tp = await rolesProxy(false);
    const a = await tp.connect('a');
    // With name checks off the statements reach PostgreSQL, which refuses them for tenant_a's role.
    expect(await sqlstateOf(() => a.query('SELECT * FROM tenant_b.items'))).toBe('42501');
    expect(await sqlstateOf(() => a.query("SELECT nextval('tenant_b.seq')"))).toBe('42501');
    expect(
      await sqlstateOf(() =>
        a.query("SELECT count(*) FROM tenant_b.items WHERE 'tenant_b.items'::regclass IS NOT NULL"),
      ),
    ).toBe('42501');
    expect(await sqlstateOf(() => a.query('INSERT INTO tenant_b.items VALUES (99, $1)', ['x']))).toBe('42501');
    // Its own schema works.
    expect((await a.query('SELECT count(*)::int AS n FROM tenant_a.items')).rows[0].n).toBe(2);
  });

  it('refuses identity changes even with name checks off', async () => {
    tp = await rolesProxy(false);
    const a = await tp.connect('a');
    expect(await sqlstateOf(() => a.query('SET ROLE tenant_b'))).toBe('42501');
    expect(await sqlstateOf(() => a.query('RESET ROLE'))).toBe('42501');
    expect(await sqlstateOf(() => a.query("SELECT set_config('role', 'tenant_b', false)"))).toBe('42501');
  });

  it('stops the statement behind a pin that fails because the tenant role was revoked while its client was connected', async () => {
    // Suspension revokes the proxy's membership in the tenant role; a client logged in before keeps its connection.
    const { database, proxyRole } = inject('pgRoles');
    const admin = new pg.Client({ connectionString: withDatabase(inject('pg').superuserUrl, database) });
    await admin.connect();
    try {
      await provisionTenant(admin, { schema: 'tenant_c', role: 'tenant_c', proxyRole });
      await admin.query('CREATE TABLE tenant_c.log (note text)');
      await admin.query('ALTER TABLE tenant_c.log OWNER TO tenant_c');
      tp = await rolesProxy(true);
      const c = await tp.connect('c');
      c.on('error', () => undefined); // the FATAL ends c's connection
      const b = await tp.connect('b');
      await c.query("INSERT INTO log VALUES ('before')");
      await b.query('SELECT 1'); // b takes the one server: c's next statement needs a new pin
      await admin.query(`REVOKE tenant_c FROM ${proxyRole}`);
      await expect(c.query("INSERT INTO tenant_c.log VALUES ('after the revoke')")).rejects.toMatchObject({
        code: '42501',
      });
      expect((await admin.query('SELECT count(*)::int AS n FROM tenant_c.log')).rows[0].n).toBe(1);
      expect((await b.query('SELECT current_user AS u, count(*)::int AS n FROM items')).rows[0]).toEqual({
        u: 'tenant_b',
        n: 3,
      });
    } finally {
      await admin.query('DROP SCHEMA IF EXISTS tenant_c CASCADE');
      await admin.query('DROP ROLE IF EXISTS tenant_c');
      await admin.end();
    }
  });

  it('refuses a login when the tenant role is missing', async () => {
    tp = await startTestProxy(
      { tenancy: { roles: true, roleTemplate: 'missing_{tenant}' } },
      inject('pgRoles').upstreamUrl,
    );
    expect(await sqlstateOf(() => tp.connect('a'))).toBe('28000');
  });
});
