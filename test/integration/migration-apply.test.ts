// The rewritten drizzle-kit fixture applied to two tenant schemas as the runner will: one transaction per migration,
// pinned with SET LOCAL ROLE and SET LOCAL search_path, as the proxy's login role.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { quoteIdent } from '../../src/auth/identity.js';
import { prepareMigration, type PreparedMigration } from '../../src/migrations/rewrite.js';
import { loadMigrations } from '../../src/migrations/source.js';
import { provisionTenant } from '../../src/tenants/provision.js';
import { withDatabase } from '../support/postgres.js';

const DRIZZLE_FIXTURE = new URL('../fixtures/drizzle/', import.meta.url).pathname;
// Schemas and roles of this file only (tenant_a/tenant_b belong to the other tests).
const TENANTS = ['tenant_mig1', 'tenant_mig2'];

let admin: pg.Client;
let proxy: pg.Client;

async function dropTenants(): Promise<void> {
  for (const tenant of TENANTS) {
    await admin.query(`DROP SCHEMA IF EXISTS ${quoteIdent(tenant)} CASCADE`);
    const { rows } = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [tenant]);
    if (rows.length > 0) {
      await admin.query(`DROP OWNED BY ${quoteIdent(tenant)}`);
      await admin.query(`DROP ROLE ${quoteIdent(tenant)}`);
    }
  }
}

/** What the runner will do for one tenant and one migration (lock and statement timeouts included). */
async function apply(migration: PreparedMigration, schema: string, role: string): Promise<void> {
  await proxy.query('BEGIN');
  try {
    await proxy.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
    await proxy.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
    await proxy.query(`SET LOCAL lock_timeout = '5s'`);
    await proxy.query(`SET LOCAL statement_timeout = '10min'`);
    for (const statement of migration.forSchema(schema)) await proxy.query(statement);
    await proxy.query('COMMIT');
  } catch (err) {
    await proxy.query('ROLLBACK');
    throw err;
  }
}

beforeAll(async () => {
  const roles = inject('pgRoles');
  admin = new pg.Client({ connectionString: withDatabase(inject('pg').superuserUrl, roles.database) });
  await admin.connect();
  await dropTenants();
  for (const tenant of TENANTS)
    await provisionTenant(admin, { schema: tenant, role: tenant, proxyRole: roles.proxyRole });
  proxy = new pg.Client({ connectionString: roles.upstreamUrl });
  await proxy.connect();
});

afterAll(async () => {
  await proxy?.end();
  if (admin !== undefined) {
    await dropTenants();
    await admin.end();
  }
});

describe('drizzle-kit migrations applied per tenant', () => {
  it('creates every object in each tenant schema, owned by its role, and nothing in public', async () => {
    const migrations = (await loadMigrations(DRIZZLE_FIXTURE)).map((m) =>
      prepareMigration(m, { sourceSchema: 'public' }),
    );
    for (const tenant of TENANTS) for (const migration of migrations) await apply(migration, tenant, tenant);

    const objects = await admin.query<{ schema: string; name: string; kind: string; owner: string }>(
      `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind, pg_get_userbyid(c.relowner) AS owner
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = ANY($1) OR (n.nspname = 'public' AND c.relname = ANY($2))
        ORDER BY 1, 2`,
      [[...TENANTS], ['users', 'posts', 'ticket_seq', 'published_posts', 'posts_id_seq', 'users_id_seq']],
    );
    const expected = (tenant: string): string[] =>
      [
        'posts:r',
        'posts_author_idx:i',
        'posts_id_seq:S',
        'posts_pkey:i',
        'posts_published_idx:i',
        'published_posts:v',
        'ticket_seq:S',
        'users:r',
        'users_email_idx:i',
        'users_id_seq:S',
        'users_pkey:i',
      ].map((o) => `${tenant}.${o}:${tenant}`);
    expect(objects.rows.map((r) => `${r.schema}.${r.name}:${r.kind}:${r.owner}`)).toEqual([
      ...expected('tenant_mig1'),
      ...expected('tenant_mig2'),
    ]);

    const types = await admin.query<{ schema: string; labels: string[] }>(
      `SELECT n.nspname AS schema, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
         FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE t.typname = 'status' GROUP BY 1 ORDER BY 1`,
    );
    expect(types.rows).toEqual(TENANTS.map((schema) => ({ schema, labels: ['active', 'archived', 'banned'] })));

    // Each foreign key points into its own tenant's schema.
    const fks = await admin.query<{ from: string; to: string }>(
      `SELECT conrelid::regclass::text AS from, confrelid::regclass::text AS to FROM pg_constraint
        WHERE contype = 'f' AND connamespace = ANY(SELECT oid FROM pg_namespace WHERE nspname = ANY($1)) ORDER BY 1`,
      [[...TENANTS]],
    );
    expect(fks.rows).toEqual(TENANTS.map((t) => ({ from: `${t}.posts`, to: `${t}.users` })));

    // The tenant's own traffic (its role, its search_path) can use what the migrations made.
    await proxy.query('BEGIN');
    await proxy.query('SET LOCAL ROLE tenant_mig1');
    await proxy.query('SET LOCAL search_path TO tenant_mig1');
    await proxy.query(`INSERT INTO users (email) VALUES ('a@example.com')`);
    await proxy.query(`INSERT INTO posts (author_id, published, status) VALUES (1, true, 'banned')`);
    const { rows } = await proxy.query<{ n: number; t: string }>(
      `SELECT count(*)::int AS n, nextval('ticket_seq')::text AS t FROM published_posts`,
    );
    await proxy.query('COMMIT');
    expect(rows).toEqual([{ n: 1, t: '100' }]);
  });

  it('rolls back the whole migration of the tenant it failed for, and only that', async () => {
    const migration = {
      id: '0002_extra',
      file: '0002_extra.sql',
      checksum: '0'.repeat(64),
      noTransaction: false,
      statements: [
        'CREATE TABLE "public"."extra" (a int)',
        'CREATE UNIQUE INDEX "one_author" ON "public"."posts" ("author_id")',
      ],
    };
    const prepared = prepareMigration(migration, { sourceSchema: 'public' });
    // tenant_mig1 has two posts by the same author after this, so its unique index fails; tenant_mig2 has none.
    await admin.query('INSERT INTO tenant_mig1.posts (author_id) VALUES (1)');
    await expect(apply(prepared, 'tenant_mig1', 'tenant_mig1')).rejects.toMatchObject({ code: '23505' });
    await apply(prepared, 'tenant_mig2', 'tenant_mig2');
    const { rows } = await admin.query<{ name: string }>(
      `SELECT c.relnamespace::regnamespace::text || '.' || c.relname AS name FROM pg_class c
        WHERE c.relname IN ('extra', 'one_author') ORDER BY 1`,
    );
    expect(rows.map((r) => r.name)).toEqual(['tenant_mig2.extra', 'tenant_mig2.one_author']);
  });
});
