// `tenants create --from-template SCHEMA`: a structural copy of a template schema into a new tenant's.
import { quoteIdent } from '../auth/identity.js';
import type { SqlRunner } from './provision.js';
import { schemaDdl } from './schema-ddl.js';
import { TenantError } from './tenant-error.js';

/**
 * `tenants create --from-template SCHEMA`: the template's structure (types, sequences from their start, tables with
 * their defaults and constraints, indexes, views, comments; the export's DDL, without rows, grants or sequence
 * positions) made again in the new tenant's schema inside create's transaction, owned as the tenant's own traffic
 * needs (its role, else the proxy's). Returns what the DDL generator does not carry (functions, triggers, …).
 */
export async function copyTemplate(
  db: SqlRunner,
  template: string,
  tenant: { schema: string; role: string | null },
  proxyRole: string,
): Promise<string[]> {
  if (template === tenant.schema || template.startsWith('pg_') || template === 'information_schema') {
    throw new TenantError('invalid_argument', `schema "${template}" cannot serve as a template`);
  }
  const { rows } = await db.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [template]);
  if (rows.length === 0) throw new TenantError('invalid_argument', `template schema "${template}" does not exist`);
  // Generated with the template on the search path, so the DDL names no schema and lands wherever it runs.
  await db.query(`SET LOCAL search_path = ${quoteIdent(template)}`);
  const { ddl, skipped } = await schemaDdl(db, template, false);
  await db.query(`SET LOCAL search_path = ${quoteIdent(tenant.schema)}`);
  await db.query(`SET LOCAL ROLE ${quoteIdent(tenant.role ?? proxyRole)}`);
  for (const sql of [...ddl.preData, ...ddl.postData]) await db.query(sql);
  await db.query('RESET ROLE');
  await db.query('SET LOCAL search_path TO DEFAULT');
  return skipped;
}
