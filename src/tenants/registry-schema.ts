// The registry's own tables in the control schema: numbered upgrade steps applied in order, once, under a lock.
import { quoteIdent, quoteLiteral } from '../auth/identity.js';
import type { SqlRunner } from './provision.js';
import { USAGE_FLUSH_SIGNATURE, usageTables } from '../usage/usage-schema.js';

/** One upgrade of the registry's tables; never edited once released, only followed by new steps. */
interface UpgradeStep {
  version: number;
  description: string;
  /** Statements run in the upgrade's transaction; `s` is the quoted schema name. */
  sql(s: string, schema: string): string[];
}

const STEPS: readonly UpgradeStep[] = [
  {
    version: 1,
    description: 'tenants, lifecycle events, deletion certificates, change notification',
    sql: (s, schema) => [
      // What the proxy polls when notifications may have been missed: bumped once per statement that changes tenants,
      // in the same transaction, so a reader never sees the new count before the rows it counts.
      `CREATE TABLE ${s}.registry_state (
         singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
         change_count bigint NOT NULL DEFAULT 0
       )`,
      `INSERT INTO ${s}.registry_state DEFAULT VALUES`,
      `CREATE TABLE ${s}.tenants (
         id text PRIMARY KEY,
         schema_name text NOT NULL UNIQUE,
         role_name text UNIQUE,
         status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleting', 'deleted')),
         tier text,
         canary boolean NOT NULL DEFAULT false,
         issuer text,
         suspended_reason text,
         suspended_at timestamptz,
         migration_version text,
         created_at timestamptz NOT NULL DEFAULT now(),
         updated_at timestamptz NOT NULL DEFAULT now(),
         CHECK (status <> 'suspended' OR suspended_reason IS NOT NULL)
       )`,
      `CREATE TABLE ${s}.events (
         id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         at timestamptz NOT NULL DEFAULT now(),
         actor text NOT NULL,
         verb text NOT NULL,
         tenant_id text,
         outcome text NOT NULL CHECK (outcome IN ('ok', 'noop', 'error')),
         details jsonb NOT NULL DEFAULT '{}'
       )`,
      `CREATE INDEX events_tenant_at ON ${s}.events (tenant_id, at)`,
      `CREATE TABLE ${s}.deletion_certificates (
         id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         tenant_id text NOT NULL,
         issued_at timestamptz NOT NULL DEFAULT now(),
         actor text NOT NULL,
         certificate jsonb NOT NULL
       )`,
      `CREATE INDEX deletion_certificates_tenant ON ${s}.deletion_certificates (tenant_id)`,
      // Each changed row names its tenant on the channel (delivered at commit); proxies re-read that row rather than
      // trust the payload, so a stray NOTIFY on the channel costs a lookup and nothing else.
      `CREATE FUNCTION ${s}.tenants_notify() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
       BEGIN
         PERFORM pg_notify(${quoteLiteral(changeChannel(schema))}, CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
         RETURN NULL;
       END $$`,
      `CREATE TRIGGER tenants_notify AFTER INSERT OR UPDATE OR DELETE ON ${s}.tenants
         FOR EACH ROW EXECUTE FUNCTION ${s}.tenants_notify()`,
      `CREATE FUNCTION ${s}.tenants_count_change() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
       BEGIN
         UPDATE ${s}.registry_state SET change_count = change_count + 1;
         RETURN NULL;
       END $$`,
      `CREATE TRIGGER tenants_count_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${s}.tenants
         FOR EACH STATEMENT EXECUTE FUNCTION ${s}.tenants_count_change()`,
    ],
  },
  // Scheduled deletions (src/tenants/delete.ts)
  {
    version: 2,
    description: 'scheduled deletions: due time, who asked, the export made first',
    sql: (s) => [
      `ALTER TABLE ${s}.tenants
         ADD COLUMN deletion_due_at timestamptz,
         ADD COLUMN deletion_requested_by text,
         ADD COLUMN deletion_requested_at timestamptz,
         ADD COLUMN deletion_export jsonb`,
    ],
  },
  {
    version: 3,
    description: 'tenant migrations: which migration each tenant applied, when, by whom, with which checksum',
    sql: (s) => [
      // In the registry, not in the tenant's schema: the tenant cannot change it and its exports do not carry it.
      // Deferred, so create can record migrations in its transaction before the tenant's row is inserted.
      `CREATE TABLE ${s}.tenant_migrations (
         tenant_id text NOT NULL REFERENCES ${s}.tenants (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
         migration_id text NOT NULL,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now(),
         applied_by text NOT NULL,
         no_transaction boolean NOT NULL DEFAULT false,
         PRIMARY KEY (tenant_id, migration_id)
       )`,
      `CREATE INDEX tenant_migrations_migration ON ${s}.tenant_migrations (migration_id, checksum)`,
    ],
  },
  {
    version: 4,
    description: 'per-tenant limits: overrides of limits.default and the tier, set by `tenants limits`',
    sql: (s) => [
      // On the tenants row itself: the row's NOTIFY and change-count triggers carry a change to every proxy.
      `ALTER TABLE ${s}.tenants
         ADD COLUMN limits jsonb NOT NULL DEFAULT '{}' CHECK (pg_catalog.jsonb_typeof(limits) = 'object')`,
    ],
  },
  {
    version: 5,
    description: 'usage metering: hourly usage per tenant, per-instance peaks, flushes applied exactly once',
    sql: (s) => usageTables(s),
  },
  {
    version: 6,
    description: "tenant routes: each tenant's upstream, database and placement (shared or dedicated)",
    sql: (s) => [
      // In the tenants row itself: a route change is an UPDATE of it, so the triggers of version 1 notify and count it
      // and every proxy's mirror follows (a move flips these columns). `placement` is not `tier`, which is free-form.
      `ALTER TABLE ${s}.tenants
         ADD COLUMN upstream text NOT NULL DEFAULT 'default' CHECK (upstream ~ '^[a-z][a-z0-9_-]{0,62}$'),
         ADD COLUMN database text CHECK (database IS NULL OR length(database) BETWEEN 1 AND 63),
         ADD COLUMN placement text NOT NULL DEFAULT 'shared' CHECK (placement IN ('shared', 'dedicated'))`,
      `CREATE INDEX tenants_upstream ON ${s}.tenants (upstream)`,
    ],
  },
];

/** The registry version this build writes and reads. */
export const REGISTRY_VERSION = STEPS[STEPS.length - 1]!.version;

/** The channel proxies LISTEN on; NOTIFY payloads are tenant ids. */
export function changeChannel(schema: string): string {
  return `${schema}_changes`;
}

/** The registry is newer than this build: it must not write to tables it does not know. */
export class RegistryTooNewError extends Error {
  constructor(readonly found: number) {
    super(
      `the registry is at version ${found}, newer than this pg-tenant-proxy knows (${REGISTRY_VERSION}); upgrade pg-tenant-proxy`,
    );
    this.name = 'RegistryTooNewError';
  }
}

export interface EnsureRegistryResult {
  /** Version found before (0: no registry). */
  from: number;
  to: number;
}

/**
 * Creates or upgrades the registry in `schema` and grants `proxyRole` (the proxy's login role) what it needs: USAGE
 * on the schema, SELECT on tenants and registry_state, EXECUTE on usage_flush, nothing else (LISTEN needs no
 * privilege). `client` must be one connection (it runs a transaction) with no transaction open. Concurrent callers
 * serialise on an advisory lock; the one that finds the work done does nothing.
 */
export async function ensureRegistry(
  client: SqlRunner,
  schema: string,
  proxyRole: string,
): Promise<EnsureRegistryResult> {
  const current = await registryVersion(client, schema);
  if (current > REGISTRY_VERSION) throw new RegistryTooNewError(current);
  if (current === REGISTRY_VERSION && (await proxyCanRead(client, schema, proxyRole)))
    return { from: current, to: current };

  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), 0)', [
      `pg-tenant-proxy registry ${schema}`,
    ]);
    const from = await registryVersion(client, schema);
    if (from > REGISTRY_VERSION) throw new RegistryTooNewError(from);
    const s = quoteIdent(schema);
    if (from === 0) {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
      await client.query(`REVOKE ALL ON SCHEMA ${s} FROM PUBLIC`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${s}.registry_version (
           version integer PRIMARY KEY,
           description text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
    }
    for (const step of STEPS) {
      if (step.version <= from) continue;
      for (const statement of step.sql(s, schema)) await client.query(statement);
      await client.query(`INSERT INTO ${s}.registry_version (version, description) VALUES ($1, $2)`, [
        step.version,
        step.description,
      ]);
    }
    const proxy = quoteIdent(proxyRole);
    await client.query(`GRANT USAGE ON SCHEMA ${s} TO ${proxy}`);
    await client.query(`GRANT SELECT ON ${s}.tenants, ${s}.registry_state TO ${proxy}`);
    // Usage reaches the registry only through this function (it can add, never rewrite or read).
    await client.query(`GRANT EXECUTE ON FUNCTION ${s}.${USAGE_FLUSH_SIGNATURE} TO ${proxy}`);
    await client.query('COMMIT');
    return { from, to: REGISTRY_VERSION };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The registry's version in `schema`, 0 when there is none. */
export async function registryVersion(client: SqlRunner, schema: string): Promise<number> {
  const { rows } = await client.query('SELECT pg_catalog.to_regclass($1) IS NOT NULL AS present', [
    `${quoteIdent(schema)}.registry_version`,
  ]);
  if ((rows[0] as { present: boolean }).present !== true) return 0;
  const result = await client.query(
    `SELECT coalesce(max(version), 0) AS v FROM ${quoteIdent(schema)}.registry_version`,
  );
  return Number((result.rows[0] as { v: number }).v);
}

async function proxyCanRead(client: SqlRunner, schema: string, proxyRole: string): Promise<boolean> {
  const { rows } = await client.query(
    `SELECT pg_catalog.has_schema_privilege($1, $2, 'USAGE')
        AND pg_catalog.has_table_privilege($1, $3, 'SELECT')
        AND pg_catalog.has_table_privilege($1, $4, 'SELECT')
        AND pg_catalog.has_function_privilege($1, $5, 'EXECUTE') AS ok`,
    [
      proxyRole,
      schema,
      `${quoteIdent(schema)}.tenants`,
      `${quoteIdent(schema)}.registry_state`,
      `${quoteIdent(schema)}.${USAGE_FLUSH_SIGNATURE}`,
    ],
  );
  return (rows[0] as { ok: boolean }).ok === true;
}
