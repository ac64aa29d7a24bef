// Which migrations each tenant applied (the registry's tenant_migrations table) and the lock that lets one run at a time.
import { quoteIdent } from '../auth/identity.js';
import type { SqlRunner } from '../tenants/provision.js';

/** One applied migration of one tenant, as recorded. */
export interface AppliedMigration {
  tenant: string;
  migration: string;
  checksum: string;
  appliedAt: string;
  appliedBy: string;
  noTransaction: boolean;
}

/** Reads and writes the tracking table in the registry schema `schema`. */
export class MigrationTracking {
  private readonly s: string;

  constructor(readonly schema: string) {
    this.s = quoteIdent(schema);
  }

  /** Every recorded migration of these tenants (all tenants when `tenants` is undefined). */
  async applied(db: SqlRunner, tenants?: readonly string[]): Promise<AppliedMigration[]> {
    const { rows } = await db.query(
      `SELECT tenant_id, migration_id, checksum, applied_at::text AS applied_at, applied_by, no_transaction
         FROM ${this.s}.tenant_migrations
        WHERE $1::text[] IS NULL OR tenant_id = ANY ($1)
        ORDER BY tenant_id, migration_id`,
      [tenants === undefined ? null : [...tenants]],
    );
    return (rows as Array<Record<string, unknown>>).map((r) => ({
      tenant: r['tenant_id'] as string,
      migration: r['migration_id'] as string,
      checksum: r['checksum'] as string,
      appliedAt: r['applied_at'] as string,
      appliedBy: r['applied_by'] as string,
      noTransaction: r['no_transaction'] as boolean,
    }));
  }

  /**
   * Records one applied migration and makes it the tenant's migration version. Inside the migration's transaction
   * (or right after a no-transaction file), with the session's own role: the registry is not the tenant role's.
   */
  async record(
    db: SqlRunner,
    entry: { tenant: string; migration: string; checksum: string; actor: string; noTransaction: boolean },
    updateVersion = true,
  ): Promise<void> {
    await db.query(
      `INSERT INTO ${this.s}.tenant_migrations (tenant_id, migration_id, checksum, applied_by, no_transaction)
       VALUES ($1, $2, $3, $4, $5)`,
      [entry.tenant, entry.migration, entry.checksum, entry.actor, entry.noTransaction],
    );
    if (updateVersion) {
      await db.query(`UPDATE ${this.s}.tenants SET migration_version = $2, updated_at = now() WHERE id = $1`, [
        entry.tenant,
        entry.migration,
      ]);
    }
  }
}

/** The key of the run lock: one migrate at a time per registry. */
function lockKey(schema: string): [string, number] {
  return [`pg-tenant-proxy migrate ${schema}`, 0];
}

/**
 * Takes the run lock on `db` (a session-level advisory lock: held until released or the connection ends, so a crashed
 * run frees it). Returns false at once when another run holds it.
 */
export async function tryRunLock(db: SqlRunner, schema: string): Promise<boolean> {
  const [name, n] = lockKey(schema);
  const { rows } = await db.query('SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext($1), $2) AS ok', [
    name,
    n,
  ]);
  return (rows[0] as { ok: boolean }).ok === true;
}

export async function releaseRunLock(db: SqlRunner, schema: string): Promise<void> {
  const [name, n] = lockKey(schema);
  await db.query('SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtext($1), $2)', [name, n]);
}

/** Who holds the run lock (application_name and backend start), for the refusal's message; null when unknown. */
export async function runLockHolder(db: SqlRunner, schema: string): Promise<string | null> {
  const [name, n] = lockKey(schema);
  const { rows } = await db.query(
    `SELECT a.pid, a.application_name, a.client_addr::text AS addr, a.backend_start::text AS since
       FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int = pg_catalog.hashtext($1) AND l.objid::int = $2
      LIMIT 1`,
    [name, n],
  );
  const row = rows[0] as { pid: number; application_name: string; addr: string | null; since: string } | undefined;
  if (row === undefined) return null;
  return `backend pid ${row.pid}${row.addr === null ? '' : ` from ${row.addr}`}, connected since ${row.since}`;
}
