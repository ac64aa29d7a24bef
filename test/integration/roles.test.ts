import { afterEach, describe, expect, inject, it } from 'vitest';
import { sqlstateOf, startTestProxy, type TestProxy } from '../support/proxy.js';

let tp: TestProxy;
afterEach(async () => {
  await tp?.close();
});

const rolesProxy = (checkNames: boolean): Promise<TestProxy> =>
  startTestProxy({ upstream: { poolSize: 1 }, tenancy: { roles: true }, policy: { checkNames } }, inject('pgRoles').upstreamUrl);

describe('tenancy.roles: the database as the second line', () => {
  it('pins SET ROLE with the search_path and resets both', async () => {
    tp = await rolesProxy(true);
    const a = await tp.connect('a');
    const b = await tp.connect('b');
    for (let i = 0; i < 3; i++) {
      expect((await a.query('SELECT current_user AS u, count(*)::int AS n FROM items')).rows[0]).toEqual({ u: 'tenant_a', n: 2 });
      expect((await b.query('SELECT current_user AS u, count(*)::int AS n FROM items')).rows[0]).toEqual({ u: 'tenant_b', n: 3 });
    }
  });

  it('stops what no parser sees when the name checks are off: names inside strings', async () => {
    tp = await rolesProxy(false);
    const a = await tp.connect('a');
    // With name checks off the statements reach PostgreSQL, which refuses them for tenant_a's role.
    expect(await sqlstateOf(() => a.query('SELECT * FROM tenant_b.items'))).toBe('42501');
    expect(await sqlstateOf(() => a.query("SELECT nextval('tenant_b.seq')"))).toBe('42501');
    expect(await sqlstateOf(() => a.query("SELECT count(*) FROM tenant_b.items WHERE 'tenant_b.items'::regclass IS NOT NULL"))).toBe('42501');
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

  it('refuses a login when the tenant role is missing', async () => {
    tp = await startTestProxy({ tenancy: { roles: true, roleTemplate: 'missing_{tenant}' } }, inject('pgRoles').upstreamUrl);
    expect(await sqlstateOf(() => tp.connect('a'))).toBe('28000');
  });
});
