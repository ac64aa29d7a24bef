// The create verb: role, schema, grants, migrations and record in one transaction, then the after-create migrations.
import { DEFAULT_UPSTREAM, type Config } from '../config/schema.js';
import { quoteIdent } from '../auth/identity.js';
import { Placement } from '../routing/route.js';
import { checkUpstream, connectUpstreamAdmin, prepareUpstream, proxyRoleOn } from '../routing/upstream-admin.js';
import type { CreateTenantOptions, CreateTenantResult, TenantAdminOptions } from './lifecycle-types.js';
import { createRoleOwnedSchema, createTenantRole, grantSchemaUse, grantTenantRole } from './provision.js';
import type { SqlRunner } from './provision.js';
import type { RegistryStore } from './registry-store.js';
import { refuseGone, TenantError, toTenantError, type CreateStep } from './tenant-error.js';
import { checkIssuer, checkLabel, tenantNames } from './tenant-input.js';
import type { VerbRunner } from './verb-runner.js';

/** What create needs of the TenantAdmin session it runs in. */
export interface CreateContext {
  config: Config;
  store: RegistryStore;
  runner: VerbRunner;
  options: Pick<TenantAdminOptions, 'migrate' | 'afterCreate'>;
}

/** Registers a tenant: its role (tenancy.roles), schema, grants, then the record, all in one transaction. */
export async function createVerb(
  ctx: CreateContext,
  id: string,
  options: CreateTenantOptions = {},
): Promise<CreateTenantResult> {
  const names = tenantNames(ctx.config, id);
  checkLabel('tier', options.tier);
  checkIssuer(ctx.config, options.issuer);
  const upstream = options.upstream ?? DEFAULT_UPSTREAM;
  checkUpstream(ctx.config, upstream);
  const afterCreate = ctx.options.afterCreate;
  if (upstream !== DEFAULT_UPSTREAM && afterCreate !== undefined) {
    // They would run on the registry's connection, not the tenant's cluster.
    throw new TenantError(
      'invalid_argument',
      `migrations that cannot run in a transaction are not applied at create on upstream "${upstream}": create the tenant, then run \`migrate\``,
    );
  }
  const result = await createInTransaction(ctx, id, names, options);
  if (result.outcome !== 'created' || afterCreate === undefined) return result;
  return ctx.runner.run<CreateTenantResult>(
    'create_migrations',
    id,
    async (db) => {
      await step('migrations', () => afterCreate(db, { tenant: result.tenant, adopted: result.adopted }));
      return {
        result: { ...result, tenant: (await ctx.store.get(db, id)) ?? result.tenant },
        outcome: 'ok',
        details: {},
      };
    },
    false,
  );
}

function createInTransaction(
  ctx: CreateContext,
  id: string,
  names: { schema: string; role: string | null },
  options: CreateTenantOptions,
): Promise<CreateTenantResult> {
  return ctx.runner.run<CreateTenantResult>('create', id, async (db) => {
    const existing = await ctx.store.get(db, id, true);
    if (existing !== null) {
      refuseGone(existing);
      return {
        result: { outcome: 'exists', tenant: existing, adopted: { schema: false, role: false } },
        outcome: 'noop',
        details: { reason: 'already registered' },
      };
    }
    const upstream = options.upstream ?? DEFAULT_UPSTREAM;
    // The tenant's objects live on its upstream; its record (and migration tracking) in the registry, on `db`.
    const remote = upstream === DEFAULT_UPSTREAM ? null : await connectUpstreamAdmin(ctx.config, upstream);
    try {
      if (remote !== null) {
        await prepareUpstream(remote, ctx.config, upstream);
        await remote.query('BEGIN');
      }
      const created = await createObjects(ctx, remote ?? db, db, id, names, options, upstream);
      // The tenant's cluster commits first: a record never routes to a schema that is not there. Should the registry's
      // commit fail after it, the schema stays behind and a second create takes it over (adopted).
      if (remote !== null) await remote.query('COMMIT');
      return created;
    } catch (err) {
      await remote?.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      await remote?.end().catch(() => undefined);
    }
  });
}

/** Role, schema, grants and migrations on `target` (the tenant's upstream), then the record in the registry (`db`). */
async function createObjects(
  ctx: CreateContext,
  target: SqlRunner,
  db: SqlRunner,
  id: string,
  names: { schema: string; role: string | null },
  options: CreateTenantOptions,
  upstream: string,
): Promise<{ result: CreateTenantResult; outcome: 'ok'; details: Record<string, unknown> }> {
  {
    const { schema, role } = names;
    const proxyRole = proxyRoleOn(ctx.config, upstream);
    const adopted = { schema: false, role: false };
    if (role !== null) {
      await step('role', async () => {
        const { rows } = await target.query(
          // A member of other roles would lend every pin what they may read (pg_read_all_data, another tenant).
          `SELECT rolcanlogin OR rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls
                  OR EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid) AS privileged
             FROM pg_catalog.pg_roles r WHERE rolname = $1`,
          [role],
        );
        if ((rows[0] as { privileged?: boolean } | undefined)?.privileged === true) {
          throw new TenantError(
            'conflict',
            `role "${role}" exists and can log in, holds privileges or is a member of other roles; a tenant role must be a plain NOLOGIN role`,
          );
        }
        adopted.role = !(await createTenantRole(target, role));
      });
    }
    await step('schema', async () => {
      const { rows } = await target.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [schema]);
      adopted.schema = rows.length > 0;
      if (role !== null) await createRoleOwnedSchema(target, { schema, role });
      else await target.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
    });
    await step('grants', async () => {
      if (role !== null) await grantTenantRole(target, { role, proxyRole });
      else await grantSchemaUse(target, { schema, grantTo: proxyRole });
    });
    const migrationVersion = await step(
      'migrations',
      async () => (await ctx.options.migrate?.(target, { id, schema, role, upstream }, db)) ?? null,
    );
    const tenant = await step('record', () =>
      ctx.store.insert(db, {
        id,
        schema,
        role,
        tier: options.tier ?? null,
        canary: options.canary ?? false,
        issuer: options.issuer ?? null,
        migrationVersion,
        upstream,
        database: null,
        placement: options.dedicated === true ? Placement.Dedicated : Placement.Shared,
      }),
    );
    return {
      result: { outcome: 'created', tenant, adopted },
      outcome: 'ok',
      details: {
        schema,
        role,
        tier: tenant.tier,
        canary: tenant.canary,
        issuer: tenant.issuer,
        upstream: tenant.upstream,
        placement: tenant.placement,
        adopted,
      },
    };
  }
}

/** Runs one step of create; a failure becomes TenantError step_failed naming the step (a conflict keeps its code). */
async function step<T>(name: CreateStep, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    const cause = toTenantError(err);
    if (cause.code === 'unreachable') throw cause;
    throw new TenantError(
      cause.code === 'conflict' ? 'conflict' : 'step_failed',
      `create failed at step "${name}" (nothing was left behind): ${cause.message}`,
      name,
      { cause: err },
    );
  }
}
