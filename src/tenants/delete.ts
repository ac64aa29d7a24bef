// Deleting a tenant with proof: schedule (grace), complete (drop schema and role, verify), the deletion certificate.
import { quoteIdent } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import type { SqlRunner } from './provision.js';
import type { VerbBody } from './verb-runner.js';
import { refuseOtherUpstream } from '../routing/upstream-admin.js';
import { TenantStatus, type RegistryStore, type TenantRecord } from './registry-store.js';

/** What the lifecycle session lends the deletion verbs: its registry, its actor and its way of running a verb. */
export interface DeletionContext {
  config: Config;
  store: RegistryStore;
  actor: string;
  run<T>(verb: string, tenant: string | null, body: VerbBody<T>, transaction?: boolean): Promise<T>;
  /** A TenantError (tenant-error.ts; passed in by the TenantAdmin that runs these verbs). */
  fail(code: 'not_found' | 'wrong_status' | 'invalid_argument' | 'database', message: string): Error;
}

/** The export made before a deletion, as the certificate records it. */
export interface DeletionExport {
  format: 'jsonl' | 'dump';
  path: string;
  /** SHA-256 of the dump file, or of manifest.json (which holds every file's SHA-256). */
  sha256: string;
}

export interface DeleteTenantOptions {
  /** Seconds to wait before the data goes; 0 (the default) deletes now. */
  graceSeconds?: number;
  /** Made by the caller before the deletion is recorded; kept for the certificate. */
  export?: DeletionExport;
}

export interface DeleteTenantResult {
  /** `scheduled`: a grace period runs (`purge` completes it); `deleted`: gone, with its certificate. */
  outcome: 'scheduled' | 'deleted';
  tenant: TenantRecord;
  dueAt: string;
  certificate?: DeletionCertificate;
}

export interface DeletionCheck {
  name: string;
  passed: boolean;
  /** What was looked for, and what was found when the check failed. */
  detail: string;
}

export interface DroppedTable {
  name: string;
  kind: 'table' | 'partitioned table' | 'materialized view';
  rows: number;
}

export interface DeletionCertificate {
  certificateVersion: 1;
  id?: number;
  tenant: string;
  schema: string;
  role: string | null;
  database: string;
  server: string;
  /** Who completed the deletion, and who asked for it. */
  actor: string;
  requestedBy: string;
  requestedAt: string;
  dueAt: string;
  startedAt: string;
  completedAt: string;
  /** Backends that still held locks on the tenant's relations and were terminated. */
  terminatedBackends: number;
  dropped: {
    tables: DroppedTable[];
    views: string[];
    sequences: string[];
    indexes: string[];
    functions: string[];
    types: string[];
    other: string[];
    totalRows: number;
  };
  export: DeletionExport | null;
  checks: DeletionCheck[];
  result: 'verified';
}

/** `7d`, `12h`, `30m`, `45s`, `2w` or a bare number of seconds → seconds; null when it is none of those. */
export function parseDuration(value: string): number | null {
  const match = /^(\d{1,9})(s|m|h|d|w)?$/.exec(value.trim());
  if (match === null) return null;
  const unit = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[(match[2] ?? 's') as 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(match[1]) * unit;
}

interface DeletionRow {
  deletion_due_at: Date | null;
  deletion_requested_by: string | null;
  deletion_requested_at: Date | null;
  deletion_export: DeletionExport | null;
}

async function deletionRow(db: SqlRunner, store: RegistryStore, id: string): Promise<DeletionRow> {
  const { rows } = await db.query(
    `SELECT deletion_due_at, deletion_requested_by, deletion_requested_at, deletion_export FROM ${quoteIdent(store.schema)}.tenants WHERE id = $1`,
    [id],
  );
  return rows[0] as DeletionRow;
}

/**
 * Records the deletion (status deleting, so every proxy refuses the tenant and ends its sessions as their
 * transactions end) and, without a grace period, completes it at once.
 */
export async function deleteTenantVerb(
  ctx: DeletionContext,
  id: string,
  options: DeleteTenantOptions,
): Promise<DeleteTenantResult> {
  const grace = options.graceSeconds ?? 0;
  const s = quoteIdent(ctx.store.schema);
  const scheduled = await ctx.run<DeleteTenantResult>('delete', id, async (db) => {
    const current = await ctx.store.get(db, id, true);
    if (current === null) throw ctx.fail('not_found', `tenant "${id}" is not registered`);
    if (current.status === TenantStatus.Deleted) throw ctx.fail('wrong_status', `tenant "${id}" was deleted already`);
    refuseOtherUpstream('delete', current);
    if (current.status === TenantStatus.Deleting) {
      const row = await deletionRow(db, ctx.store, id);
      throw ctx.fail(
        'wrong_status',
        `tenant "${id}" is being deleted already (due ${row.deletion_due_at?.toISOString() ?? 'now'}); tenants purge completes it once due, tenants resume cancels it`,
      );
    }
    const { rows } = await db.query(
      `UPDATE ${s}.tenants
          SET status = 'deleting', suspended_at = coalesce(suspended_at, now()), updated_at = now(),
              deletion_due_at = now() + make_interval(secs => $2), deletion_requested_by = $3,
              deletion_requested_at = now(), deletion_export = $4
        WHERE id = $1 RETURNING deletion_due_at`,
      [id, grace, ctx.actor, options.export === undefined ? null : JSON.stringify(options.export)],
    );
    const dueAt = (rows[0] as { deletion_due_at: Date }).deletion_due_at.toISOString();
    const tenant = (await ctx.store.get(db, id))!;
    return {
      result: { outcome: 'scheduled', tenant, dueAt },
      outcome: 'ok',
      details: { graceSeconds: grace, dueAt, previous: current.status, export: options.export ?? null },
    };
  });
  if (grace > 0) return scheduled;
  const { certificate, tenant } = await completeDeletion(ctx, id);
  return { outcome: 'deleted', tenant, dueAt: scheduled.dueAt, certificate };
}

/** Cancels a scheduled deletion (resume during the grace period): the tenant is active again. */
export async function cancelDeletion(
  db: SqlRunner,
  store: RegistryStore,
  id: string,
): Promise<{ dueAt: string | null; requestedBy: string | null }> {
  const row = await deletionRow(db, store, id);
  await db.query(
    `UPDATE ${quoteIdent(store.schema)}.tenants
        SET status = 'active', suspended_reason = NULL, suspended_at = NULL, updated_at = now(),
            deletion_due_at = NULL, deletion_requested_by = NULL, deletion_requested_at = NULL, deletion_export = NULL
      WHERE id = $1`,
    [id],
  );
  return { dueAt: row.deletion_due_at?.toISOString() ?? null, requestedBy: row.deletion_requested_by };
}

export interface PurgeResult {
  deleted: Array<{ tenant: string; certificate: DeletionCertificate }>;
  failed: Array<{ tenant: string; error: string }>;
}

/** Completes every deletion whose grace period is over, one tenant at a time; one failure does not stop the rest. */
export async function purgeVerb(ctx: DeletionContext): Promise<PurgeResult> {
  const due = await ctx.run<string[]>(
    'purge',
    null,
    async (db) => {
      const { rows } = await db.query(
        `SELECT id FROM ${quoteIdent(ctx.store.schema)}.tenants WHERE status = 'deleting' AND deletion_due_at <= now() ORDER BY deletion_due_at, id`,
      );
      const ids = (rows as Array<{ id: string }>).map((r) => r.id);
      return { result: ids, outcome: ids.length === 0 ? 'noop' : 'ok', details: { due: ids } };
    },
    false,
  );
  const result: PurgeResult = { deleted: [], failed: [] };
  for (const id of due) {
    try {
      result.deleted.push({ tenant: id, certificate: (await completeDeletion(ctx, id)).certificate });
    } catch (err) {
      result.failed.push({ tenant: id, error: (err as Error).message });
    }
  }
  return result;
}

/** The certificate of a deleted tenant. */
export async function certificateVerb(ctx: DeletionContext, id: string): Promise<DeletionCertificate> {
  return ctx.run<DeletionCertificate>(
    'certificate',
    id,
    async (db) => {
      const { rows } = await db.query(
        `SELECT id, certificate FROM ${quoteIdent(ctx.store.schema)}.deletion_certificates WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1`,
        [id],
      );
      const row = rows[0] as { id: string; certificate: DeletionCertificate } | undefined;
      if (row === undefined) {
        const tenant = await ctx.store.get(db, id);
        if (tenant === null)
          throw ctx.fail('not_found', `tenant "${id}" is not registered and has no deletion certificate`);
        throw ctx.fail('wrong_status', `tenant "${id}" has no deletion certificate (status ${tenant.status})`);
      }
      return {
        result: { ...row.certificate, id: Number(row.id) },
        outcome: 'ok',
        details: { certificate: Number(row.id) },
      };
    },
    false,
  );
}

/**
 * Drops the tenant and proves it, in one transaction: ends the backends that hold locks on its relations, locks and
 * counts its tables, drops the schema (CASCADE) and the role (DROP OWNED first), checks that nothing is left,
 * reduces the registry row to a tombstone and stores the certificate. A failed check rolls everything back.
 */
async function completeDeletion(
  ctx: DeletionContext,
  id: string,
): Promise<{ certificate: DeletionCertificate; tenant: TenantRecord }> {
  const s = quoteIdent(ctx.store.schema);
  return ctx.run('delete_complete', id, async (db) => {
    const tenant = await ctx.store.get(db, id, true);
    if (tenant === null) throw ctx.fail('not_found', `tenant "${id}" is not registered`);
    if (tenant.status !== TenantStatus.Deleting)
      throw ctx.fail('wrong_status', `tenant "${id}" is ${tenant.status}, not being deleted`);
    refuseOtherUpstream('delete', tenant);
    const request = await deletionRow(db, ctx.store, id);
    const started = await now(db);
    const schema = tenant.schema;
    const role = tenant.role;
    const schemaOid = await oidOf(
      db,
      'SELECT oid::bigint AS oid FROM pg_catalog.pg_namespace WHERE nspname = $1',
      schema,
    );
    const roleOid =
      role === null
        ? null
        : await oidOf(db, 'SELECT oid::bigint AS oid FROM pg_catalog.pg_roles WHERE rolname = $1', role);

    await db.query("SET LOCAL lock_timeout = '10s'");
    const terminated = schemaOid === null ? 0 : await terminateHolders(db, schemaOid);
    const dropped = schemaOid === null ? emptyInventory() : await inventory(db, schemaOid);
    if (schemaOid !== null) {
      // Counted under ACCESS EXCLUSIVE: the numbers are exactly what the DROP takes away.
      // LOCK TABLE refuses materialized views; their rows change only by REFRESH, which the tenant, locked out and
      // its sessions ended, can no longer run.
      const lockable = dropped.tables
        .filter((t) => t.kind !== 'materialized view')
        .map((t) => `${quoteIdent(schema)}.${quoteIdent(t.name)}`);
      if (lockable.length > 0) await db.query(`LOCK TABLE ${lockable.join(', ')} IN ACCESS EXCLUSIVE MODE`);
      const unpopulated = await unpopulatedViews(db, schemaOid);
      for (const table of dropped.tables) {
        // An unpopulated materialized view refuses a count and holds no rows.
        if (table.kind === 'partitioned table' || unpopulated.has(table.name)) continue;
        const { rows } = await db.query(
          `SELECT count(*)::bigint AS n FROM ONLY ${quoteIdent(schema)}.${quoteIdent(table.name)}`,
        );
        table.rows = Number((rows[0] as { n: string }).n);
      }
      dropped.totalRows = dropped.tables.reduce((sum, t) => sum + t.rows, 0);
      await db.query(`DROP SCHEMA ${quoteIdent(schema)} CASCADE`);
    }
    if (role !== null && roleOid !== null) {
      // DROP OWNED, not REASSIGN OWNED: anything the tenant's role owns elsewhere in this database is the tenant's
      // and goes too (reassigning would keep it under another owner); DROP OWNED also revokes its grants and default
      // privileges. Objects it owns in another database make DROP ROLE fail, which rolls all of this back.
      await db.query(`DROP OWNED BY ${quoteIdent(role)}`);
      await db.query(`DROP ROLE ${quoteIdent(role)}`);
    }
    await db.query(
      `UPDATE ${s}.tenants
          SET status = 'deleted', tier = NULL, canary = false, issuer = NULL, suspended_reason = NULL, suspended_at = NULL,
              migration_version = NULL, deletion_due_at = NULL, deletion_requested_by = NULL, deletion_requested_at = NULL,
              deletion_export = NULL, updated_at = now()
        WHERE id = $1`,
      [id],
    );
    // Which migrations it ran is the tenant's data too; the tombstone keeps none of it.
    await db.query(`DELETE FROM ${s}.tenant_migrations WHERE tenant_id = $1`, [id]);
    const checks = await verify(db, ctx.store, { id, schema, role, schemaOid, roleOid });
    const failed = checks.filter((c) => !c.passed);
    if (failed.length > 0) {
      throw ctx.fail(
        'database',
        `deletion of tenant "${id}" rolled back: ${failed.map((c) => `${c.name} (${c.detail})`).join('; ')}`,
      );
    }
    const { rows: info } = await db.query("SELECT current_database() AS db, current_setting('server_version') AS v");
    const { db: database, v: server } = info[0] as { db: string; v: string };
    const certificate: DeletionCertificate = {
      certificateVersion: 1,
      tenant: id,
      schema,
      role,
      database,
      server: `PostgreSQL ${server}`,
      actor: ctx.actor,
      requestedBy: request.deletion_requested_by ?? ctx.actor,
      requestedAt: (request.deletion_requested_at ?? started).toISOString(),
      dueAt: (request.deletion_due_at ?? started).toISOString(),
      startedAt: started.toISOString(),
      completedAt: (await now(db)).toISOString(),
      terminatedBackends: terminated,
      dropped,
      export: request.deletion_export,
      checks,
      result: 'verified',
    };
    const { rows: stored } = await db.query(
      `INSERT INTO ${s}.deletion_certificates (tenant_id, actor, certificate) VALUES ($1, $2, $3) RETURNING id`,
      [id, ctx.actor, JSON.stringify(certificate)],
    );
    certificate.id = Number((stored[0] as { id: string }).id);
    return { result: { certificate, tenant: (await ctx.store.get(db, id))! }, outcome: 'ok', details: { certificate } };
  });
}

async function now(db: SqlRunner): Promise<Date> {
  const { rows } = await db.query('SELECT clock_timestamp() AS t');
  return (rows[0] as { t: Date }).t;
}

async function oidOf(db: SqlRunner, sql: string, name: string): Promise<string | null> {
  const { rows } = await db.query(sql, [name]);
  return (rows[0] as { oid: string } | undefined)?.oid ?? null;
}

/** Ends every other backend of this database holding a lock on one of the schema's relations; returns how many. */
async function terminateHolders(db: SqlRunner, schemaOid: string): Promise<number> {
  const { rows } = await db.query(
    `SELECT count(*) FILTER (WHERE pg_catalog.pg_terminate_backend(pid, 5000))::int AS n FROM (
       SELECT DISTINCT l.pid
         FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_class c ON c.oid = l.relation
        WHERE c.relnamespace = $1::oid AND l.pid <> pg_catalog.pg_backend_pid()
          AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
        OFFSET 0) holders`,
    [schemaOid],
  );
  return (rows[0] as { n: number }).n;
}

function emptyInventory(): DeletionCertificate['dropped'] {
  return { tables: [], views: [], sequences: [], indexes: [], functions: [], types: [], other: [], totalRows: 0 };
}

async function unpopulatedViews(db: SqlRunner, schemaOid: string): Promise<Set<string>> {
  const { rows } = await db.query(
    `SELECT relname AS name FROM pg_catalog.pg_class WHERE relnamespace = $1::oid AND relkind = 'm' AND NOT relispopulated`,
    [schemaOid],
  );
  return new Set((rows as Array<{ name: string }>).map((r) => r.name));
}

/** Everything in the schema, by kind (row counts filled in later). */
async function inventory(db: SqlRunner, schemaOid: string): Promise<DeletionCertificate['dropped']> {
  const out = emptyInventory();
  const { rows } = await db.query(
    `SELECT relname AS name, relkind AS kind FROM pg_catalog.pg_class WHERE relnamespace = $1::oid AND relkind <> 't' ORDER BY relname`,
    [schemaOid],
  );
  for (const { name, kind } of rows as Array<{ name: string; kind: string }>) {
    switch (kind) {
      case 'r':
        out.tables.push({ name, kind: 'table', rows: 0 });
        break;
      case 'p':
        out.tables.push({ name, kind: 'partitioned table', rows: 0 });
        break;
      case 'm':
        out.tables.push({ name, kind: 'materialized view', rows: 0 });
        break;
      case 'v':
        out.views.push(name);
        break;
      case 'S':
        out.sequences.push(name);
        break;
      case 'i':
      case 'I':
        out.indexes.push(name);
        break;
      case 'c':
        // A composite type's relation: listed once, as its type.
        break;
      default:
        out.other.push(`${name} (relkind ${kind})`);
    }
  }
  const { rows: functions } = await db.query(
    `SELECT p.oid::regprocedure::text AS name FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1::oid ORDER BY 1`,
    [schemaOid],
  );
  out.functions = (functions as Array<{ name: string }>).map((f) => f.name);
  const { rows: types } = await db.query(
    `SELECT t.typname AS name FROM pg_catalog.pg_type t
      WHERE t.typnamespace = $1::oid AND t.typelem = 0 AND t.typcategory <> 'A'
        AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
      ORDER BY 1`,
    [schemaOid],
  );
  out.types = (types as Array<{ name: string }>).map((t) => t.name);
  return out;
}

/** The checks the certificate lists; each asks the catalogs (or the registry) for what must no longer exist. */
async function verify(
  db: SqlRunner,
  store: RegistryStore,
  t: { id: string; schema: string; role: string | null; schemaOid: string | null; roleOid: string | null },
): Promise<DeletionCheck[]> {
  const checks: DeletionCheck[] = [];
  const count = async (name: string, detail: string, sql: string, values: unknown[]): Promise<void> => {
    const { rows } = await db.query(`SELECT count(*)::int AS n FROM (${sql}) found`, values);
    const n = (rows[0] as { n: number }).n;
    checks.push({ name, passed: n === 0, detail: n === 0 ? detail : `${detail}: ${n} found` });
  };
  await count(
    'schema_absent',
    `no schema named ${t.schema}`,
    'SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1',
    [t.schema],
  );
  const nsp = t.schemaOid ?? '0';
  await count(
    'no_objects_in_schema',
    'no relation, function or type in the dropped schema',
    `SELECT 1 FROM pg_catalog.pg_class WHERE relnamespace = $1::oid
     UNION ALL SELECT 1 FROM pg_catalog.pg_proc WHERE pronamespace = $1::oid
     UNION ALL SELECT 1 FROM pg_catalog.pg_type WHERE typnamespace = $1::oid`,
    [nsp],
  );
  await count(
    'no_default_acl',
    'no default privileges for the schema or set by the role',
    'SELECT 1 FROM pg_catalog.pg_default_acl WHERE defaclnamespace = $1::oid OR defaclrole = $2::oid',
    [nsp, t.roleOid ?? '0'],
  );
  if (t.role === null) {
    checks.push({
      name: 'role_absent',
      passed: true,
      detail: 'tenancy.roles was off for this tenant: it had no role of its own',
    });
  } else {
    const oid = t.roleOid ?? '0';
    await count(
      'role_absent',
      `no role named ${t.role}`,
      'SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1 OR oid = $2::oid',
      [t.role, oid],
    );
    await count(
      'no_owned_objects',
      'no object in any database owned by the role',
      "SELECT 1 FROM pg_catalog.pg_shdepend WHERE refclassid = 'pg_catalog.pg_authid'::regclass AND refobjid = $1::oid AND deptype = 'o'",
      [oid],
    );
    await count(
      'no_shdepend',
      'no pg_shdepend entry (ownership, grant, policy) naming the role, in any database',
      "SELECT 1 FROM pg_catalog.pg_shdepend WHERE refclassid = 'pg_catalog.pg_authid'::regclass AND refobjid = $1::oid",
      [oid],
    );
    await count(
      'no_role_membership',
      'the role is no member and has no members',
      'SELECT 1 FROM pg_catalog.pg_auth_members WHERE roleid = $1::oid OR member = $1::oid',
      [oid],
    );
  }
  const s = quoteIdent(store.schema);
  await count(
    'registry_tombstone_only',
    'the registry row keeps only id, schema and role names, status deleted and timestamps; no certificate existed before',
    `SELECT 1 FROM ${s}.tenants WHERE id = $1 AND (status <> 'deleted' OR tier IS NOT NULL OR issuer IS NOT NULL OR suspended_reason IS NOT NULL
       OR migration_version IS NOT NULL OR deletion_export IS NOT NULL OR deletion_requested_by IS NOT NULL)
     UNION ALL SELECT 1 FROM ${s}.tenant_migrations WHERE tenant_id = $1
     UNION ALL SELECT 1 FROM ${s}.deletion_certificates WHERE tenant_id = $1`,
    [t.id],
  );
  return checks;
}
