// Reads the registry's usage buckets: one row per tenant and hour, peaks combined across proxy instances.
import { quoteIdent } from '../auth/identity.js';
import type { SqlRunner } from '../tenants/provision.js';
import { schemaUsage } from '../tenants/registry-store.js';

export interface UsageRow {
  tenant: string;
  /** The bucket's first instant, ISO 8601 UTC. */
  hour: string;
  transactions: number;
  statements: number;
  server_ms: number;
  bytes_in: number;
  bytes_out: number;
  /** rows_returned + rows_affected. */
  rows: number;
  peak_clients: number;
  rows_returned: number;
  rows_affected: number;
  /** With --storage: the tenant's schema size now (null when it has no schema any more). */
  storage_bytes?: number | null;
}

/** The columns `tenants usage` prints, in order (json adds rows_returned and rows_affected). */
export const USAGE_COLUMNS = [
  'tenant',
  'hour',
  'transactions',
  'statements',
  'server_ms',
  'bytes_in',
  'bytes_out',
  'rows',
  'peak_clients',
] as const;

export interface UsageQuery {
  /** Buckets at or after this instant. */
  since?: Date;
  /** Buckets before this instant. */
  until?: Date;
  tenant?: string;
  /** Sample each tenant's schema size now. */
  storage?: boolean;
}

/**
 * peak_clients: per instance the registry keeps its peak and the span it served the tenant in; an hour's peak is the
 * largest sum over instances whose spans overlap one instance's start (so an instance that replaced another across a
 * restart does not add to it, while workers and proxies running side by side do). With one instance it is exact;
 * with several it is an upper bound, reached when their peaks coincide.
 */
export async function readUsage(db: SqlRunner, schema: string, query: UsageQuery = {}): Promise<UsageRow[]> {
  const s = quoteIdent(schema);
  const { rows } = await db.query(
    `WITH peaks AS (
       SELECT a.tenant_id, a.hour, max((
         SELECT sum(b.peak_clients) FROM ${s}.usage_peaks b
          WHERE b.tenant_id = a.tenant_id AND b.hour = a.hour AND b.first_at <= a.first_at AND b.last_at >= a.first_at
       )) AS peak
         FROM ${s}.usage_peaks a
        WHERE ($1::timestamptz IS NULL OR a.hour >= $1) AND ($2::timestamptz IS NULL OR a.hour < $2)
          AND ($3::text IS NULL OR a.tenant_id = $3)
        GROUP BY a.tenant_id, a.hour
     )
     SELECT h.tenant_id, h.hour, h.transactions, h.statements, h.server_ms, h.bytes_in, h.bytes_out,
            h.rows_returned, h.rows_affected, coalesce(p.peak, 0) AS peak
       FROM ${s}.usage_hours h LEFT JOIN peaks p USING (tenant_id, hour)
      WHERE ($1::timestamptz IS NULL OR h.hour >= $1) AND ($2::timestamptz IS NULL OR h.hour < $2)
        AND ($3::text IS NULL OR h.tenant_id = $3)
      ORDER BY h.tenant_id, h.hour`,
    [query.since ?? null, query.until ?? null, query.tenant ?? null],
  );
  const out = (rows as Array<Record<string, unknown>>).map((r): UsageRow => {
    const n = (key: string): number => Number(r[key]);
    return {
      tenant: r['tenant_id'] as string,
      hour: (r['hour'] as Date).toISOString(),
      transactions: n('transactions'),
      statements: n('statements'),
      server_ms: n('server_ms'),
      bytes_in: n('bytes_in'),
      bytes_out: n('bytes_out'),
      rows: n('rows_returned') + n('rows_affected'),
      peak_clients: n('peak'),
      rows_returned: n('rows_returned'),
      rows_affected: n('rows_affected'),
    };
  });
  if (query.storage === true) await addStorage(db, s, out);
  return out;
}

/** Each tenant's schema size, sampled once per tenant, on every one of its rows. */
async function addStorage(db: SqlRunner, s: string, rows: UsageRow[]): Promise<void> {
  const tenants = [...new Set(rows.map((r) => r.tenant))];
  const { rows: schemas } = await db.query(
    `SELECT t.id, t.schema_name FROM ${s}.tenants t
      WHERE t.id = ANY ($1) AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = t.schema_name)`,
    [tenants],
  );
  const sizes = new Map<string, number>();
  for (const row of schemas as Array<Record<string, unknown>>) {
    sizes.set(row['id'] as string, (await schemaUsage(db, row['schema_name'] as string)).sizeBytes);
  }
  for (const row of rows) row.storage_bytes = sizes.get(row.tenant) ?? null;
}
