// `tenants delete|purge|certificate|export|import` against a real PostgreSQL: a deletion leaves nothing behind and its
// certificate lists what was there; grace + purge + resume-cancels; --yes or a terminal; exports round-trip.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/config/load.js';
import type { DeletionCertificate } from '../../src/tenants/delete.js';
import { exportTenant } from '../../src/tenants/export.js';
import type { JsonlManifest } from '../../src/tenants/export-manifest.js';
import { importTenant } from '../../src/tenants/import.js';
import { TenantAdmin } from '../../src/tenants/lifecycle.js';
import { buildDist, DIST_CLI } from '../support/build.js';
import { TEST_SECRET } from '../support/proxy.js';
import { createRegistryDatabase, type RegistryDatabase } from '../support/registry.js';

let rdb: RegistryDatabase;
let target: RegistryDatabase;
let dir: string;
const READER = 'pgtp_del_reader';

beforeAll(async () => {
  await buildDist();
  rdb = await createRegistryDatabase('pgtp_tenants_delete');
  target = await createRegistryDatabase('pgtp_tenants_import');
  dir = mkdtempSync(join(os.tmpdir(), 'pgtp-delete-'));
  const c = await rdb.connect();
  try {
    await c.query(
      `DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${READER}') THEN CREATE ROLE ${READER} NOLOGIN; END IF; END $$`,
    );
  } finally {
    await c.end();
  }
}, 120_000);

afterAll(async () => {
  await target?.drop(['tenant_del_y']);
  await rdb?.drop(['tenant_del_', READER]);
});

function configFor(db: RegistryDatabase, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstream: { url: db.upstreamUrl },
    auth: { jwt: { secret: TEST_SECRET } },
    tenancy: { roles: true },
    admin: { url: db.adminUrl },
    audit: { file: join(dir, 'audit.log') },
    ...extra,
  };
}

function writeConfig(name: string, config: Record<string, unknown>): string {
  const file = join(dir, name);
  writeFileSync(file, stringify(config));
  return file;
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [DIST_CLI, 'tenants', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function ok(args: string[]): Promise<string> {
  const r = await cli(args);
  expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 0, stderr: '' });
  return r.stdout;
}

async function query<T = Record<string, unknown>>(db: RegistryDatabase, sql: string, values?: unknown[]): Promise<T[]> {
  const client = await db.connect();
  try {
    return (await client.query(sql, values)).rows as T[];
  } finally {
    await client.end();
  }
}

/** A schema with something of everything the export must carry, owned by the tenant role as a migration would make it. */
async function fill(db: RegistryDatabase, schema: string, role: string): Promise<void> {
  await query(
    db,
    `SET ROLE ${role};
     SET search_path = ${schema};
     CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
     CREATE SEQUENCE invoice_no START 1000 INCREMENT 5;
     CREATE TABLE customers (
       id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
       email text NOT NULL UNIQUE,
       name text NOT NULL DEFAULT 'anonymous',
       mood mood,
       born date CHECK (born > '1900-01-01'),
       score numeric(12, 4) DEFAULT 0.5,
       avatar bytea,
       tags text[],
       prefs jsonb DEFAULT '{}'::jsonb,
       email_lower text GENERATED ALWAYS AS (lower(email)) STORED
     );
     CREATE TABLE orders (
       id serial PRIMARY KEY,
       customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
       invoice int NOT NULL DEFAULT nextval('invoice_no'),
       amount numeric NOT NULL CONSTRAINT positive CHECK (amount > 0),
       placed timestamptz NOT NULL DEFAULT now(),
       note text
     );
     CREATE INDEX orders_placed ON orders (placed DESC) WHERE note IS NOT NULL;
     CREATE VIEW big_orders AS SELECT o.id, c.email, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.amount > 100;
     COMMENT ON TABLE customers IS 'who buys';
     COMMENT ON COLUMN orders.note IS 'free text, no PII please';
     COMMENT ON VIEW big_orders IS 'orders above 100';
     COMMENT ON CONSTRAINT positive ON orders IS 'refunds are separate';
     GRANT SELECT ON big_orders TO ${READER};
     GRANT SELECT (id) ON customers TO ${READER};
     INSERT INTO customers (email, name, mood, born, score, avatar, tags, prefs)
       SELECT 'u' || g || '@example.com', CASE WHEN g % 3 = 0 THEN 'anonymous' ELSE 'Ünïcödé "name" ' || g END,
              (ARRAY['sad', 'ok', 'happy']::mood[])[1 + g % 3], date '1980-01-01' + g, g * 1.2345, decode(md5(g::text), 'hex'),
              ARRAY['a', 'b' || g], jsonb_build_object('n', g, 'nested', jsonb_build_array(g, 'x'))
         FROM generate_series(1, 120) g;
     INSERT INTO orders (customer_id, amount, note) SELECT 1 + g % 120, g * 3.5, CASE WHEN g % 2 = 0 THEN 'line' || chr(10) || g END FROM generate_series(1, 300) g;
     RESET ROLE;`,
  );
  await query(db, `GRANT SELECT ON ${schema}.big_orders TO ${READER}`);
}

describe('tenants delete, purge, certificate', () => {
  it('deletes now: ends the session holding a lock, drops schema and role, leaves nothing, and certifies what was there', async () => {
    const config = writeConfig('delete.yaml', configFor(rdb));
    const as = ['--config', config, '--actor', 'dpo'];
    await ok(['create', 'del_a', '--tier', 'pro', '--issuer', 'okta', ...as]);
    await fill(rdb, 'tenant_del_a', 'tenant_del_a');
    const [before] = await query<{ oid: string }>(
      rdb,
      "SELECT oid::bigint::text AS oid FROM pg_roles WHERE rolname = 'tenant_del_a'",
    );

    // A session mid-transaction on the tenant's data: it holds a lock the DROP would wait for.
    const holder = await rdb.connect();
    const ended = new Promise<string | undefined>((resolve) =>
      holder.on('error', (err: Error & { code?: string }) => resolve(err.code)),
    );
    await holder.query('BEGIN');
    await holder.query('SELECT count(*) FROM tenant_del_a.orders');

    const out = await ok(['delete', 'del_a', '--yes', ...as]);
    expect(out).toMatch(
      /^deleted tenant del_a: 2 tables \(420 rows\) dropped with schema tenant_del_a and role tenant_del_a; (\d+)\/\1 checks passed; certificate \d+\n$/,
    );
    expect(await ended).toBe('57P01');
    await holder.end().catch(() => undefined);

    const [left] = await query<Record<string, number>>(
      rdb,
      `SELECT (SELECT count(*)::int FROM pg_namespace WHERE nspname = 'tenant_del_a') AS schema,
              (SELECT count(*)::int FROM pg_roles WHERE rolname = 'tenant_del_a') AS role,
              (SELECT count(*)::int FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass AND refobjid = $1::oid) AS shdepend,
              (SELECT count(*)::int FROM pg_auth_members WHERE roleid = $1::oid OR member = $1::oid) AS membership,
              (SELECT count(*)::int FROM pg_default_acl WHERE defaclrole = $1::oid) AS default_acl`,
      [before!.oid],
    );
    expect(left).toEqual({ schema: 0, role: 0, shdepend: 0, membership: 0, default_acl: 0 });
    const [row] = await query(
      rdb,
      "SELECT status, tier, issuer, schema_name, deletion_due_at FROM pgtp.tenants WHERE id = 'del_a'",
    );
    expect(row).toEqual({
      status: 'deleted',
      tier: null,
      issuer: null,
      schema_name: 'tenant_del_a',
      deletion_due_at: null,
    });

    const certificate = JSON.parse(await ok(['certificate', 'del_a', ...as])) as DeletionCertificate;
    expect(certificate).toMatchObject({
      tenant: 'del_a',
      schema: 'tenant_del_a',
      role: 'tenant_del_a',
      actor: 'dpo',
      requestedBy: 'dpo',
      terminatedBackends: 1,
      result: 'verified',
      export: null,
    });
    expect(certificate.dropped.tables).toEqual([
      { name: 'customers', kind: 'table', rows: 120 },
      { name: 'orders', kind: 'table', rows: 300 },
    ]);
    expect(certificate.dropped.views).toEqual(['big_orders']);
    expect(certificate.dropped.sequences.sort()).toEqual(['customers_id_seq', 'invoice_no', 'orders_id_seq']);
    expect(certificate.dropped.indexes).toContain('orders_placed');
    expect(certificate.dropped.types).toEqual(['mood']);
    expect(certificate.checks.map((c) => c.name)).toEqual([
      'schema_absent',
      'no_objects_in_schema',
      'no_default_acl',
      'role_absent',
      'no_owned_objects',
      'no_shdepend',
      'no_role_membership',
      'registry_tombstone_only',
    ]);
    expect(certificate.checks.every((c) => c.passed)).toBe(true);

    // Stored in the registry and written to the audit trail.
    const [stored] = await query<{ certificate: DeletionCertificate }>(
      rdb,
      "SELECT certificate FROM pgtp.deletion_certificates WHERE tenant_id = 'del_a'",
    );
    expect(stored!.certificate.dropped.totalRows).toBe(420);
    const audit = readFileSync(join(dir, 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { verb: string; tenant: string; details: { certificate?: DeletionCertificate } });
    expect(
      audit.find((l) => l.verb === 'delete_complete' && l.tenant === 'del_a')?.details.certificate?.checks,
    ).toHaveLength(8);

    // A deleted tenant stays deleted: its id cannot be reused, a second delete is refused.
    const again = await cli(['delete', 'del_a', '--yes', ...as]);
    expect(again).toMatchObject({ code: 1, stdout: '' });
    expect(again.stderr).toMatch(/tenant "del_a" was deleted already/);
    const noCertificate = await cli(['certificate', 'del_nobody', ...as]);
    expect(noCertificate.code).toBe(1);
  });

  it('deletes a tenant holding materialized views, populated or not, and counts their rows', async () => {
    const config = writeConfig('delete-matview.yaml', configFor(rdb));
    const as = ['--config', config, '--actor', 'dpo'];
    await ok(['create', 'del_mv', ...as]);
    await query(
      rdb,
      `SET ROLE tenant_del_mv;
       CREATE TABLE tenant_del_mv.t (n int);
       INSERT INTO tenant_del_mv.t SELECT generate_series(1, 7);
       CREATE MATERIALIZED VIEW tenant_del_mv.filled AS SELECT n FROM tenant_del_mv.t WHERE n > 2;
       CREATE MATERIALIZED VIEW tenant_del_mv.empty AS SELECT n FROM tenant_del_mv.t WITH NO DATA;
       RESET ROLE;`,
    );
    expect(await ok(['delete', 'del_mv', '--yes', ...as])).toMatch(/^deleted tenant del_mv: 3 tables \(12 rows\)/);
    const certificate = JSON.parse(await ok(['certificate', 'del_mv', ...as])) as DeletionCertificate;
    expect(certificate.dropped.tables).toEqual([
      { name: 'empty', kind: 'materialized view', rows: 0 },
      { name: 'filled', kind: 'materialized view', rows: 5 },
      { name: 't', kind: 'table', rows: 7 },
    ]);
    expect(certificate.checks.every((c) => c.passed)).toBe(true);
    const [left] = await query<{ n: number }>(
      rdb,
      "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'tenant_del_mv'",
    );
    expect(left!.n).toBe(0);
  });

  it('refuses without --yes and without a terminal (exit 2, nothing changed)', async () => {
    const config = writeConfig('refuse.yaml', configFor(rdb));
    await ok(['create', 'del_r', '--config', config]);
    const r = await cli(['delete', 'del_r', '--config', config]);
    expect(r).toMatchObject({ code: 2, stdout: '' });
    expect(r.stderr).toMatch(/pass --yes \(there is no terminal to ask on\)/);
    const bad = await cli(['delete', 'del_r', '--yes', '--grace', 'soon', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--grace takes a duration/);
    const [row] = await query(rdb, "SELECT status FROM pgtp.tenants WHERE id = 'del_r'");
    expect(row).toEqual({ status: 'active' });
  });

  it('with --grace: schedules, purge completes only what is due, resume cancels', async () => {
    const config = writeConfig('grace.yaml', configFor(rdb));
    const as = ['--config', config];
    await ok(['create', 'del_g', ...as]);
    await ok(['create', 'del_h', ...as]);
    await query(rdb, 'CREATE TABLE tenant_del_g.t (id int); INSERT INTO tenant_del_g.t VALUES (1), (2)');
    expect(await ok(['delete', 'del_g', '--grace', '7d', '--yes', ...as])).toMatch(
      /^tenant del_g scheduled for deletion at \d{4}-.* \(tenants resume cancels, tenants purge completes\)\n$/,
    );
    const [scheduled] = await query<{ status: string; days: number }>(
      rdb,
      "SELECT status, round(extract(epoch FROM deletion_due_at - now()) / 86400)::int AS days FROM pgtp.tenants WHERE id = 'del_g'",
    );
    expect(scheduled).toEqual({ status: 'deleting', days: 7 });
    expect(await ok(['purge', ...as])).toBe('no deletion is due\n');
    expect(await ok(['resume', 'del_g', ...as])).toBe('resumed tenant del_g\n');
    const [back] = await query(
      rdb,
      "SELECT status, deletion_due_at, (SELECT count(*)::int FROM tenant_del_g.t) AS n FROM pgtp.tenants WHERE id = 'del_g'",
    );
    expect(back).toEqual({ status: 'active', deletion_due_at: null, n: 2 });

    await ok(['delete', 'del_g', '--grace', '1s', '--yes', ...as]);
    await ok(['delete', 'del_h', '--grace', '7d', '--yes', ...as]);
    await new Promise((r) => setTimeout(r, 1100));
    expect(await ok(['purge', ...as])).toMatch(
      /^deleted tenant del_g: 1 tables \(2 rows\) dropped with schema tenant_del_g and role tenant_del_g; 8\/8 checks passed; certificate \d+\n$/,
    );
    const rows = await query(rdb, "SELECT id, status FROM pgtp.tenants WHERE id IN ('del_g', 'del_h') ORDER BY id");
    expect(rows).toEqual([
      { id: 'del_g', status: 'deleted' },
      { id: 'del_h', status: 'deleting' },
    ]);
    const certificate = JSON.parse(await ok(['certificate', 'del_g', ...as])) as DeletionCertificate;
    expect(Date.parse(certificate.completedAt) - Date.parse(certificate.requestedAt)).toBeGreaterThanOrEqual(1000);
    // Resume after the purge is too late.
    const late = await cli(['resume', 'del_g', ...as]);
    expect(late.code).toBe(1);
  });
});

describe('tenants export and import', () => {
  it('jsonl round-trips into a fresh database: rows, checksums, defaults, constraints, indexes, views, sequences, comments, grants', async () => {
    const source = validateConfig({ ...configFor(rdb), audit: { enabled: false } });
    const admin = await TenantAdmin.open(source, { actor: 'export-test' });
    const out = join(dir, 'del_x.export');
    let exported;
    try {
      await admin.create('del_x');
      await fill(rdb, 'tenant_del_x', 'tenant_del_x');
      await query(rdb, "SELECT nextval('tenant_del_x.invoice_no'); SELECT nextval('tenant_del_x.invoice_no')");
      exported = await exportTenant(admin, 'del_x', { out, format: 'jsonl' });
    } finally {
      await admin.close();
    }
    expect(exported.tables.map((t) => [t.name, t.rows])).toEqual([
      ['customers', 120],
      ['orders', 300],
    ]);
    const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as JsonlManifest;
    expect(manifest.bytea).toBe('hex');
    expect(JSON.stringify(manifest.ddl)).not.toContain('tenant_del_x');
    const first = JSON.parse(readFileSync(join(out, 'customers.jsonl'), 'utf8').split('\n')[0]!) as Record<
      string,
      unknown
    >;
    expect(first['avatar']).toMatch(/^\\x[0-9a-f]{32}$/);

    // Into another database, under another id.
    const targetConfig = validateConfig({ ...configFor(target), audit: { enabled: false } });
    const into = await TenantAdmin.open(targetConfig, { actor: 'import-test' });
    try {
      const imported = await importTenant(into, 'del_y', { from: out });
      expect(imported.tables).toEqual([
        { name: 'customers', rows: 120 },
        { name: 'orders', rows: 300 },
      ]);
    } finally {
      await into.close();
    }
    const shapeOf = async (db: RegistryDatabase, schema: string): Promise<Record<string, unknown>> => {
      const [shape] = await query(
        db,
        `SELECT
           (SELECT json_agg(json_build_object('c', table_name || '.' || column_name, 'd', column_default, 'n', is_nullable, 't', data_type, 'g', is_generated, 'i', is_identity)
              ORDER BY table_name, ordinal_position) FROM information_schema.columns WHERE table_schema = $1) AS columns,
           (SELECT json_agg(conname || ' ' || pg_get_constraintdef(oid) ORDER BY conname) FROM pg_constraint WHERE connamespace = $1::regnamespace) AS constraints,
           (SELECT json_agg(replace(indexdef, $1, 'S') ORDER BY indexname) FROM pg_indexes WHERE schemaname = $1) AS indexes,
           (SELECT json_agg(viewname || ' ' || definition ORDER BY viewname) FROM pg_views WHERE schemaname = $1) AS views,
           (SELECT json_agg(sequencename || ' ' || last_value || ' ' || increment_by ORDER BY sequencename) FROM pg_sequences WHERE schemaname = $1) AS sequences,
           (SELECT json_agg(coalesce(c.relname, '') || '/' || d.objsubid || ' ' || d.description ORDER BY coalesce(c.relname, '') || '/' || d.objsubid || ' ' || d.description) FROM pg_description d
              LEFT JOIN pg_class c ON c.oid = d.objoid AND c.relnamespace = $1::regnamespace
              LEFT JOIN pg_constraint k ON k.oid = d.objoid AND k.connamespace = $1::regnamespace
             WHERE c.oid IS NOT NULL OR k.oid IS NOT NULL) AS comments,
           (SELECT json_agg(table_name || ' ' || privilege_type ORDER BY table_name, privilege_type) FROM information_schema.role_table_grants
             WHERE table_schema = $1 AND grantee = '${READER}') AS grants,
           (SELECT json_agg(table_name || '.' || column_name || ' ' || privilege_type ORDER BY table_name, column_name, privilege_type) FROM information_schema.column_privileges
             WHERE table_schema = $1 AND grantee = '${READER}') AS column_grants`,
        [schema],
      );
      // Definitions name the schema where it is not on the search path: compare them without it.
      return JSON.parse(JSON.stringify(shape).replaceAll(schema, 'S')) as Record<string, unknown>;
    };
    const original = await shapeOf(rdb, 'tenant_del_x');
    const copy = await shapeOf(target, 'tenant_del_y');
    for (const key of Object.keys(original)) {
      expect(original[key]).not.toBeNull();
      expect({ key, value: copy[key] }).toEqual({ key, value: original[key] });
    }
    expect(original['sequences']).toContain('invoice_no 2505 5');
    // The tenant role owns the copy, and the proxy can use it.
    const [owner] = await query(
      target,
      "SELECT tableowner FROM pg_tables WHERE schemaname = 'tenant_del_y' AND tablename = 'orders'",
    );
    expect(owner).toEqual({ tableowner: 'tenant_del_y' });
    // Inserting after the import continues the sequences where they were.
    await query(
      target,
      'SET ROLE tenant_del_y; INSERT INTO tenant_del_y.orders (customer_id, amount) VALUES (1, 5); RESET ROLE',
    );
    const [ids] = await query<{ id: number; invoice: number }>(
      target,
      'SELECT max(id) AS id, max(invoice) AS invoice FROM tenant_del_y.orders',
    );
    expect(ids).toEqual({ id: 301, invoice: 2510 });
  });

  it('dump export uses a compatible pg_dump and records the row counts of its snapshot', async () => {
    const source = validateConfig({ ...configFor(rdb), audit: { enabled: false } });
    const admin = await TenantAdmin.open(source, { actor: 'export-test' });
    const out = join(dir, 'del_d.dump');
    try {
      await admin.create('del_d');
      await query(
        rdb,
        'CREATE TABLE tenant_del_d.t (id int PRIMARY KEY); INSERT INTO tenant_del_d.t SELECT generate_series(1, 50)',
      );
      const result = await exportTenant(admin, 'del_d', { out, format: 'dump' });
      expect(result.tool).toMatch(/pg_dump.*\(pg_dump \(PostgreSQL\) \d+/);
      expect(result.tables).toEqual([{ name: 't', rows: 50 }]);
    } finally {
      await admin.close();
    }
    expect(existsSync(`${out}.manifest.json`)).toBe(true);
    expect(readFileSync(out).subarray(0, 5).toString()).toBe('PGDMP');

    // pg_restore cannot rename a schema: a dump goes into the tenant of the same schema name, in another database.
    const into = await TenantAdmin.open(validateConfig({ ...configFor(target), audit: { enabled: false } }), {
      actor: 'import-test',
    });
    try {
      await expect(importTenant(into, 'del_y2', { from: out })).rejects.toMatchObject({
        code: 'invalid_argument',
        message: /restores only into its own schema name \(tenant_del_d\)/,
      });
      const imported = await importTenant(into, 'del_d', { from: out });
      expect(imported).toMatchObject({ format: 'dump', tables: [{ name: 't', rows: 50 }] });
    } finally {
      await into.close();
    }
    const [copy] = await query(
      target,
      "SELECT count(*)::int AS n, (SELECT tableowner FROM pg_tables WHERE schemaname = 'tenant_del_d') AS owner FROM tenant_del_d.t",
    );
    expect(copy).toEqual({ n: 50, owner: 'tenant_del_d' });
  });

  it('delete --export exports first and the certificate carries its checksum', async () => {
    const config = writeConfig('export-delete.yaml', configFor(rdb));
    await ok(['create', 'del_e', '--config', config]);
    await query(
      rdb,
      "CREATE TABLE tenant_del_e.notes (id int, body text); INSERT INTO tenant_del_e.notes VALUES (1, 'a')",
    );
    const out = join(dir, 'del_e.export');
    await ok(['delete', 'del_e', '--yes', '--export', out, '--config', config]);
    const certificate = JSON.parse(await ok(['certificate', 'del_e', '--config', config])) as DeletionCertificate;
    const manifest = readFileSync(join(out, 'manifest.json'));
    expect(certificate.export).toEqual({
      format: 'jsonl',
      path: out,
      sha256: (await import('node:crypto')).createHash('sha256').update(manifest).digest('hex'),
    });
  });
});
