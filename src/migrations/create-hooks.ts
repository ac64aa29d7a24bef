// `tenants create` through the runner's code: the migrations folder applied to a new tenant, transactional files in
// create's own transaction, no-transaction files (and what follows them) after it commits, the tenant dropped again
// when those fail.
import { quoteIdent } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import type { SqlRunner } from '../tenants/provision.js';
import type { CreatedTenant, TenantAdminOptions } from '../tenants/lifecycle-types.js';
import { proxyRoleOf } from '../tenants/admin-connection.js';
import { proxyRoleOn } from '../routing/upstream-admin.js';
import { applyInOpenTransaction, applyWithoutTransaction, prepareFolder } from './runner.js';
import { MigrationTracking } from './tracking.js';

/** Per tenant migration, as `migrate` defaults them. */
const LOCK_TIMEOUT = '5000ms';
const STATEMENT_TIMEOUT = '600000ms';

/**
 * The migrate and afterCreate hooks of TenantAdminOptions for config's migrations folder (tenancy.migrationsDir), or
 * none when it is unset. The folder is read and every file rewritten now: a refused file stops create before it starts.
 */
export async function createMigrationHooks(
  config: Config,
  actor: string,
): Promise<Pick<TenantAdminOptions, 'migrate' | 'afterCreate'>> {
  const dir = config.tenancy.migrationsDir;
  if (dir === undefined) return {};
  const items = await prepareFolder(config, dir);
  const firstOutside = items.findIndex((i) => i.migration.noTransaction);
  const inside = firstOutside === -1 ? items : items.slice(0, firstOutside);
  const after = firstOutside === -1 ? [] : items.slice(firstOutside);
  const tracking = new MigrationTracking(config.tenancy.registry.schema);
  const pinFor = (
    schema: string,
    role: string | null,
    upstream?: string,
  ): { schema: string; role: string; lockTimeout: string; statementTimeout: string } => ({
    schema,
    role:
      config.tenancy.roles && role !== null
        ? role
        : upstream === undefined
          ? proxyRoleOf(config)
          : proxyRoleOn(config, upstream),
    lockTimeout: LOCK_TIMEOUT,
    statementTimeout: STATEMENT_TIMEOUT,
  });
  return {
    async migrate(db, tenant, registryDb) {
      for (const item of inside) {
        await applyInOpenTransaction(
          db,
          tracking,
          { id: tenant.id, schema: tenant.schema },
          item,
          pinFor(tenant.schema, tenant.role, tenant.upstream),
          actor,
          false,
          registryDb,
        );
      }
      return inside.at(-1)?.migration.id ?? null;
    },
    ...(after.length > 0 && {
      async afterCreate(db: SqlRunner, created: CreatedTenant): Promise<void> {
        const { tenant } = created;
        try {
          for (const item of after) {
            const pin = pinFor(tenant.schema, tenant.role);
            if (item.migration.noTransaction) {
              await applyWithoutTransaction(db, tracking, tenant, item, pin, actor);
            } else {
              await db.query('BEGIN');
              try {
                await applyInOpenTransaction(db, tracking, tenant, item, pin, actor, true);
                await db.query('COMMIT');
              } catch (err) {
                await db.query('ROLLBACK').catch(() => undefined);
                throw err;
              }
            }
          }
        } catch (err) {
          await dropCreated(db, config, created);
          throw err;
        }
      },
    }),
  };
}

/** Undoes a committed create: the schema and role it made (not ones it took over), and the record with its tracking. */
async function dropCreated(db: SqlRunner, config: Config, created: CreatedTenant): Promise<void> {
  const { tenant, adopted } = created;
  await db.query('BEGIN');
  try {
    if (!adopted.schema) await db.query(`DROP SCHEMA IF EXISTS ${quoteIdent(tenant.schema)} CASCADE`);
    if (tenant.role !== null && !adopted.role) {
      await db.query(`DROP OWNED BY ${quoteIdent(tenant.role)}`);
      await db.query(`DROP ROLE IF EXISTS ${quoteIdent(tenant.role)}`);
    }
    await db.query(`DELETE FROM ${quoteIdent(config.tenancy.registry.schema)}.tenants WHERE id = $1`, [tenant.id]);
    await db.query('COMMIT');
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
