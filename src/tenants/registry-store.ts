// The registry's rows as typed records: the queries the lifecycle verbs run on the admin connection.
import { quoteIdent } from '../auth/identity.js';
import type { Placement } from '../routing/route.js';
import type { SqlRunner } from './provision.js';

export const TenantStatus = {
  Active: 'active',
  Suspended: 'suspended',
  /** Phase of a deletion (suspended meanwhile); set by `tenants delete`. */
  Deleting: 'deleting',
  Deleted: 'deleted',
} as const;
export type TenantStatus = (typeof TenantStatus)[keyof typeof TenantStatus];
export const TENANT_STATUSES: readonly TenantStatus[] = Object.values(TenantStatus);

/** A tenant as the registry records it (times as ISO 8601 strings, so the record is its own JSON). */
export interface TenantRecord {
  id: string;
  schema: string;
  /** The tenant's NOLOGIN role (tenancy.roles), or null. */
  role: string | null;
  status: TenantStatus;
  tier: string | null;
  /** Canary tenants are the ones `migrate --canary` takes first. */
  canary: boolean;
  /** The identity provider allowed to speak for this tenant (auth.issuers), or null for any configured one. */
  issuer: string | null;
  suspendedReason: string | null;
  suspendedAt: string | null;
  /** The last tenant migration applied (the migrations runner sets it), or null. */
  migrationVersion: string | null;
  createdAt: string;
  updatedAt: string;
  /** Where its transactions go: an upstream name of the proxies' config, and its database (null: the upstream's). */
  upstream: string;
  database: string | null;
  placement: Placement;
}

/** Which columns a verb may change, and their spelling in SQL. */
const COLUMNS = {
  tier: 'tier',
  canary: 'canary',
  issuer: 'issuer',
  status: 'status',
  suspendedReason: 'suspended_reason',
  migrationVersion: 'migration_version',
  upstream: 'upstream',
  database: 'database',
  placement: 'placement',
} as const;
export type TenantChange = Partial<Pick<TenantRecord, keyof typeof COLUMNS>>;

const COLUMN_LIST = `id, schema_name, role_name, status, tier, canary, issuer, suspended_reason, suspended_at,
  migration_version, created_at, updated_at, upstream, database, placement`;
const SELECT = `SELECT ${COLUMN_LIST}`;

interface TenantRow {
  id: string;
  schema_name: string;
  role_name: string | null;
  status: TenantStatus;
  tier: string | null;
  canary: boolean;
  issuer: string | null;
  suspended_reason: string | null;
  suspended_at: Date | null;
  migration_version: string | null;
  created_at: Date;
  updated_at: Date;
  upstream: string;
  database: string | null;
  placement: Placement;
}

function toRecord(row: TenantRow): TenantRecord {
  return {
    id: row.id,
    schema: row.schema_name,
    role: row.role_name,
    status: row.status,
    tier: row.tier,
    canary: row.canary,
    issuer: row.issuer,
    suspendedReason: row.suspended_reason,
    suspendedAt: row.suspended_at === null ? null : row.suspended_at.toISOString(),
    migrationVersion: row.migration_version,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    upstream: row.upstream,
    database: row.database,
    placement: row.placement,
  };
}

export interface LifecycleEvent {
  actor: string;
  verb: string;
  tenant: string | null;
  outcome: 'ok' | 'noop' | 'error';
  details: Record<string, unknown>;
}

/** Queries against one registry schema; every method runs on the connection it is given. */
export class RegistryStore {
  private readonly s: string;

  constructor(readonly schema: string) {
    this.s = quoteIdent(schema);
  }

  /** The tenant's row, or null; `lock` takes its row lock until the transaction ends. */
  async get(db: SqlRunner, id: string, lock = false): Promise<TenantRecord | null> {
    const { rows } = await db.query(`${SELECT} FROM ${this.s}.tenants WHERE id = $1${lock ? ' FOR UPDATE' : ''}`, [id]);
    return rows.length === 0 ? null : toRecord(rows[0] as TenantRow);
  }

  async list(db: SqlRunner, status?: TenantStatus): Promise<TenantRecord[]> {
    const { rows } = await db.query(
      `${SELECT} FROM ${this.s}.tenants WHERE $1::text IS NULL OR status = $1 ORDER BY id`,
      [status ?? null],
    );
    return rows.map((row) => toRecord(row as TenantRow));
  }

  async insert(
    db: SqlRunner,
    tenant: Pick<TenantRecord, 'id' | 'schema' | 'role' | 'tier' | 'canary' | 'issuer' | 'migrationVersion'> &
      Partial<Pick<TenantRecord, 'upstream' | 'database' | 'placement'>>,
  ): Promise<TenantRecord> {
    const { rows } = await db.query(
      `INSERT INTO ${this.s}.tenants (id, schema_name, role_name, tier, canary, issuer, migration_version, upstream,
         database, placement)
       VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, 'default'), $9, coalesce($10, 'shared'))
       RETURNING ${COLUMN_LIST}`,
      [
        tenant.id,
        tenant.schema,
        tenant.role,
        tenant.tier,
        tenant.canary,
        tenant.issuer,
        tenant.migrationVersion,
        tenant.upstream ?? null,
        tenant.database ?? null,
        tenant.placement ?? null,
      ],
    );
    return toRecord(rows[0] as TenantRow);
  }

  /** Applies the change (suspended_at follows the status) and returns the new record. */
  async update(db: SqlRunner, id: string, change: TenantChange): Promise<TenantRecord> {
    const sets: string[] = [];
    const values: unknown[] = [id];
    for (const [key, column] of Object.entries(COLUMNS) as Array<[keyof typeof COLUMNS, string]>) {
      if (!(key in change)) continue;
      values.push(change[key]);
      sets.push(`${column} = $${values.length}`);
    }
    if (change.status !== undefined) {
      sets.push(change.status === TenantStatus.Suspended ? 'suspended_at = now()' : 'suspended_at = NULL');
    }
    sets.push('updated_at = now()');
    const { rows } = await db.query(
      `UPDATE ${this.s}.tenants SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMN_LIST}`,
      values,
    );
    if (rows.length === 0) throw new Error(`tenant "${id}" vanished from the registry during the update`);
    return toRecord(rows[0] as TenantRow);
  }

  async recordEvent(db: SqlRunner, event: LifecycleEvent): Promise<void> {
    await db.query(
      `INSERT INTO ${this.s}.events (actor, verb, tenant_id, outcome, details) VALUES ($1, $2, $3, $4, $5)`,
      [event.actor, event.verb, event.tenant, event.outcome, JSON.stringify(event.details)],
    );
  }
}

/** Bytes the schema's tables, indexes, TOAST, materialized views and sequences take, and its table count. */
export async function schemaUsage(db: SqlRunner, schema: string): Promise<{ sizeBytes: number; tables: number }> {
  const { rows } = await db.query(
    `SELECT coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm', 'S')), 0)::bigint AS size,
            count(*) FILTER (WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition)::int AS tables
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1`,
    [schema],
  );
  const row = rows[0] as { size: string; tables: number };
  return { sizeBytes: Number(row.size), tables: row.tables };
}
