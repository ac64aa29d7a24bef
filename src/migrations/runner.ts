// The migrations runner: every missing migration into every selected tenant schema, pinned as the proxy pins, with
// per-tenant failure isolation, tracked in the registry under a run lock.
import { quoteIdent, quoteLiteral, tenantSchemaShape } from '../auth/identity.js';
import type { Config } from '../config/schema.js';
import { loadParser } from '../guard/sql-guard.js';
import { DEFAULT_UPSTREAM } from '../config/schema.js';
import { inTransactions, MigrateConnections } from '../routing/migrate-connections.js';
import { proxyRoleOn } from '../routing/upstream-admin.js';
import { proxyRoleOf } from '../tenants/admin-connection.js';
import type { SqlRunner } from '../tenants/provision.js';
import { RegistryStore, TenantStatus, type TenantRecord } from '../tenants/registry-store.js';
import { prepareMigration, type PreparedMigration } from './rewrite.js';
import { loadMigrations, type Migration } from './source.js';
import { MigrationTracking, releaseRunLock, runLockHolder, tryRunLock, type AppliedMigration } from './tracking.js';

/** The schema drizzle-kit (and a plain migration that qualifies names) generates for; rewritten to the tenant's. */
export const SOURCE_SCHEMA = 'public';

export type RunErrorCode =
  /** Another migrate holds the run lock. */
  | 'locked'
  /** A migration file changed after some tenant applied it. */
  | 'checksum_mismatch'
  /** The folder or a file is refused (MigrationError), or no folder is configured. */
  | 'migrations'
  /** --tenants names a tenant that is not registered, or one being deleted. */
  | 'tenant';

/** A refusal of the whole run, before any tenant was touched. */
export class MigrateRunError extends Error {
  constructor(
    readonly code: RunErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'MigrateRunError';
  }
}

export interface MigrateOptions {
  /** Who runs it: recorded as applied_by and in the audit event. */
  actor: string;
  /** Only these tenant ids. */
  tenants?: readonly string[];
  /** The first N tenants (canary group first, then by id). */
  canary?: number;
  /** Tenants migrated in parallel (admin connections). */
  concurrency: number;
  dryRun: boolean;
  /** Start no new tenant after the first failure. */
  stopOnError: boolean;
  /** PostgreSQL interval text for SET lock_timeout / statement_timeout, e.g. '5s', '10min'. */
  lockTimeout: string;
  statementTimeout: string;
}

/** A tenant whose migrations were planned. */
export interface TenantPlan {
  tenant: string;
  /** The upstream its schema is on (its route). */
  upstream: string;
  schema: string;
  role: string | null;
  status: TenantStatus;
  /** Migration ids still to apply, in order. */
  missing: string[];
}

export interface TenantFailure {
  tenant: string;
  migration: string;
  file: string;
  /** 1-based statement number inside the file, when a statement failed. */
  statement: number | null;
  message: string;
  sqlstate: string | null;
  /** Migrations applied to this tenant in this run before the failure. */
  applied: string[];
}

export interface TenantSuccess {
  tenant: string;
  applied: string[];
  durationMs: number;
}

export interface MigrateReport {
  dryRun: boolean;
  actor: string;
  startedAt: string;
  durationMs: number;
  migrations: string[];
  /** Tenants selected for this run. */
  selected: number;
  succeeded: TenantSuccess[];
  failed: TenantFailure[];
  /** Not started (stop-on-error after a failure). */
  skipped: Array<{ tenant: string; reason: string }>;
  /** Selected but with nothing missing. */
  upToDate: string[];
  /** With --dry-run: what would run where. */
  plan?: Array<{ tenant: string; migrations: string[] }>;
}

/** What the runner tells the progress display. */
export interface MigrateProgress {
  start(total: number): void;
  tenantDone(
    outcome: { tenant: string; ok: true; applied: string[]; durationMs: number } | ({ ok: false } & TenantFailure),
  ): void;
  finish(): void;
}

const silent: MigrateProgress = { start: () => undefined, tenantDone: () => undefined, finish: () => undefined };

/** Loads and rewrites a migrations folder for this config (refusals are MigrationError). */
export async function prepareFolder(
  config: Config,
  dir: string,
): Promise<Array<{ migration: Migration; prepared: PreparedMigration }>> {
  await loadParser();
  const migrations = await loadMigrations(dir);
  const shape = tenantSchemaShape(config.tenancy.schemaTemplate, config.tenancy.tenantPattern);
  return migrations.map((migration) => ({
    migration,
    prepared: prepareMigration(migration, {
      sourceSchema: SOURCE_SCHEMA,
      sharedSchemas: config.tenancy.sharedSchemas,
      tenantSchemaShape: shape,
    }),
  }));
}

interface Pin {
  schema: string;
  role: string;
  lockTimeout: string;
  statementTimeout: string;
}

/** The statements that pin a connection as the proxy pins a tenant's, with the run's timeouts. */
function pinStatements(pin: Pin, local: boolean): string[] {
  const scope = local ? 'SET LOCAL' : 'SET';
  return [
    `${scope} lock_timeout = ${quoteLiteral(pin.lockTimeout)}`,
    `${scope} statement_timeout = ${quoteLiteral(pin.statementTimeout)}`,
    `${scope} search_path TO ${quoteIdent(pin.schema)}`,
    `${scope} ROLE ${quoteIdent(pin.role)}`,
  ];
}

const UNPIN = ['RESET ROLE', 'RESET search_path', 'RESET statement_timeout', 'RESET lock_timeout'];

/** A statement failed: which one, for the report. */
class StatementFailure extends Error {
  constructor(
    readonly statement: number,
    readonly error: unknown,
  ) {
    super((error as Error).message);
  }
}

async function runStatements(db: SqlRunner, statements: readonly string[]): Promise<void> {
  for (let i = 0; i < statements.length; i++) {
    try {
      await db.query(statements[i]!);
    } catch (err) {
      throw new StatementFailure(i + 1, err);
    }
  }
}

/**
 * Applies one transactional migration on `db` inside the transaction already open there, pinned with SET LOCAL, then
 * returns to the session's own role and search path and records it. What create's transaction and the runner share.
 */
export async function applyInOpenTransaction(
  db: SqlRunner,
  tracking: MigrationTracking,
  tenant: { id: string; schema: string },
  item: { migration: Migration; prepared: PreparedMigration },
  pin: Pin,
  actor: string,
  updateVersion: boolean,
  /** Where the registry is when `db` is another upstream's: the record goes there, in its own open transaction. */
  registryDb: SqlRunner = db,
): Promise<void> {
  for (const statement of pinStatements(pin, true)) await db.query(statement);
  await runStatements(db, item.prepared.forSchema(tenant.schema));
  // Back to the session's own settings for the rest of the transaction (create's goes on to write the registry).
  for (const statement of UNPIN) await db.query(statement);
  await tracking.record(
    registryDb,
    { tenant: tenant.id, migration: item.migration.id, checksum: item.migration.checksum, actor, noTransaction: false },
    updateVersion,
  );
}

/** Applies a no-transaction migration statement by statement on a dedicated session, then records it. */
export async function applyWithoutTransaction(
  db: SqlRunner,
  tracking: MigrationTracking,
  tenant: { id: string; schema: string },
  item: { migration: Migration; prepared: PreparedMigration },
  pin: Pin,
  actor: string,
  registryDb: SqlRunner = db,
): Promise<void> {
  for (const statement of pinStatements(pin, false)) await db.query(statement);
  try {
    await runStatements(db, item.prepared.forSchema(tenant.schema));
  } finally {
    for (const statement of UNPIN) await db.query(statement).catch(() => undefined);
  }
  await tracking.record(registryDb, {
    tenant: tenant.id,
    migration: item.migration.id,
    checksum: item.migration.checksum,
    actor,
    noTransaction: true,
  });
}

/** Refuses the run when an applied migration's file changed: names each file and the tenants that ran the old text. */
export function checkChecksums(migrations: readonly Migration[], applied: readonly AppliedMigration[]): void {
  const byId = new Map(migrations.map((m) => [m.id, m]));
  const changed = new Map<string, string[]>();
  for (const a of applied) {
    const m = byId.get(a.migration);
    if (m === undefined || m.checksum === a.checksum) continue;
    const list = changed.get(m.file) ?? [];
    list.push(a.tenant);
    changed.set(m.file, list);
  }
  if (changed.size === 0) return;
  const parts = [...changed].map(([file, tenants]) => {
    const shown = tenants.slice(0, 10).join(', ');
    return `${file} (applied with other text by ${tenants.length} tenant${tenants.length === 1 ? '' : 's'}: ${shown}${tenants.length > 10 ? ', …' : ''})`;
  });
  throw new MigrateRunError(
    'checksum_mismatch',
    `refusing to run: migration file${changed.size === 1 ? '' : 's'} changed after being applied: ${parts.join('; ')}; restore the applied text and put the change in a new migration`,
  );
}

function sqlstateOf(err: unknown): string | null {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

/** Orders tenants as --canary takes them: the canary group first, then by id. */
export function canaryOrder(tenants: readonly TenantRecord[]): TenantRecord[] {
  return [...tenants].sort((a, b) =>
    a.canary === b.canary ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.canary ? -1 : 1,
  );
}

/**
 * Runs a migrate: takes the run lock on `lockDb` (held for the whole run), selects tenants, refuses changed files,
 * then migrates with a pool of `concurrency` admin connections. Throws MigrateRunError for refusals of the whole run.
 */
export async function runMigrations(
  config: Config,
  items: ReadonlyArray<{ migration: Migration; prepared: PreparedMigration }>,
  lockDb: SqlRunner,
  options: MigrateOptions,
  progress: MigrateProgress = silent,
): Promise<MigrateReport> {
  const started = Date.now();
  const registrySchema = config.tenancy.registry.schema;
  const tracking = new MigrationTracking(registrySchema);
  const store = new RegistryStore(registrySchema);
  if (!(await tryRunLock(lockDb, registrySchema))) {
    const holder = await runLockHolder(lockDb, registrySchema).catch(() => null);
    throw new MigrateRunError(
      'locked',
      `another migrate is running on this registry${holder === null ? '' : ` (${holder})`}; try again when it has finished`,
    );
  }
  try {
    const all = (await store.list(lockDb)).filter(
      (t) => t.status !== TenantStatus.Deleting && t.status !== TenantStatus.Deleted,
    );
    let selected: TenantRecord[];
    if (options.tenants !== undefined) {
      const byId = new Map(all.map((t) => [t.id, t]));
      const unknown = options.tenants.filter((id) => !byId.has(id));
      if (unknown.length > 0) {
        throw new MigrateRunError('tenant', `not registered (or being deleted): ${unknown.join(', ')}`);
      }
      selected = [...new Set(options.tenants)].map((id) => byId.get(id)!);
    } else {
      selected = canaryOrder(all);
    }
    if (options.canary !== undefined) selected = canaryOrder(selected).slice(0, options.canary);

    const migrations = items.map((i) => i.migration);
    // Every tenant's record, not only the selected ones': a file changed anywhere is refused.
    const applied = await tracking.applied(lockDb);
    checkChecksums(migrations, applied);
    const done = new Map<string, Set<string>>();
    for (const a of applied) {
      let set = done.get(a.tenant);
      if (set === undefined) done.set(a.tenant, (set = new Set()));
      set.add(a.migration);
    }
    const proxyRole = proxyRoleOf(config);
    const plans: TenantPlan[] = selected.map((t) => ({
      tenant: t.id,
      upstream: t.upstream,
      schema: t.schema,
      role: config.tenancy.roles && t.role !== null ? t.role : null,
      status: t.status,
      missing: migrations.filter((m) => !(done.get(t.id)?.has(m.id) ?? false)).map((m) => m.id),
    }));

    const report: MigrateReport = {
      dryRun: options.dryRun,
      actor: options.actor,
      startedAt: new Date(started).toISOString(),
      durationMs: 0,
      migrations: migrations.map((m) => m.id),
      selected: plans.length,
      succeeded: [],
      failed: [],
      skipped: [],
      upToDate: plans.filter((p) => p.missing.length === 0).map((p) => p.tenant),
    };
    const work = plans.filter((p) => p.missing.length > 0);
    if (options.dryRun) {
      report.plan = work.map((p) => ({ tenant: p.tenant, migrations: p.missing }));
      report.durationMs = Date.now() - started;
      return report;
    }

    const byId = new Map(items.map((i) => [i.migration.id, i]));
    const connections = new MigrateConnections(config, Math.max(1, options.concurrency));
    progress.start(work.length);
    let stop = false;
    let next = 0;
    const migrateTenant = async (plan: TenantPlan): Promise<void> => {
      const t0 = Date.now();
      const pin: Pin = {
        schema: plan.schema,
        role: plan.role ?? (plan.upstream === DEFAULT_UPSTREAM ? proxyRole : proxyRoleOn(config, plan.upstream)),
        lockTimeout: options.lockTimeout,
        statementTimeout: options.statementTimeout,
      };
      const appliedNow: string[] = [];
      const conn = await connections.acquire(plan.upstream);
      const { client, registry } = conn;
      let broken: Error | undefined;
      try {
        for (const id of plan.missing) {
          const item = byId.get(id)!;
          try {
            if (item.migration.noTransaction) {
              await applyWithoutTransaction(
                client,
                tracking,
                { id: plan.tenant, schema: plan.schema },
                item,
                pin,
                options.actor,
                registry,
              );
            } else {
              await inTransactions(conn, plan.upstream, () =>
                applyInOpenTransaction(
                  client,
                  tracking,
                  { id: plan.tenant, schema: plan.schema },
                  item,
                  pin,
                  options.actor,
                  true,
                  registry,
                ),
              ).catch(async (err: unknown) => {
                // A connection that cannot even answer ROLLBACK is not given back to the pool.
                await client.query('SELECT 1').catch((e: Error) => (broken = e));
                throw err;
              });
            }
            appliedNow.push(id);
          } catch (err) {
            const cause = err instanceof StatementFailure ? err.error : err;
            const failure: TenantFailure = {
              tenant: plan.tenant,
              migration: id,
              file: item.migration.file,
              statement: err instanceof StatementFailure ? err.statement : null,
              message: (cause as Error).message ?? String(cause),
              sqlstate: sqlstateOf(cause),
              applied: appliedNow,
            };
            report.failed.push(failure);
            progress.tenantDone({ ok: false, ...failure });
            if (options.stopOnError) stop = true;
            return;
          }
        }
        const success = { tenant: plan.tenant, applied: appliedNow, durationMs: Date.now() - t0 };
        report.succeeded.push(success);
        progress.tenantDone({ ok: true, ...success });
      } finally {
        conn.release(broken);
      }
    };
    const worker = async (): Promise<void> => {
      while (next < work.length) {
        const plan = work[next++]!;
        if (stop) {
          report.skipped.push({ tenant: plan.tenant, reason: 'not started: --stop-on-error after a failure' });
          continue;
        }
        try {
          await migrateTenant(plan);
        } catch (err) {
          // The connection itself failed (pool.connect): the tenant failed, untouched.
          const failure: TenantFailure = {
            tenant: plan.tenant,
            migration: plan.missing[0]!,
            file: byId.get(plan.missing[0]!)!.migration.file,
            statement: null,
            message: (err as Error).message,
            sqlstate: sqlstateOf(err),
            applied: [],
          };
          report.failed.push(failure);
          progress.tenantDone({ ok: false, ...failure });
          if (options.stopOnError) stop = true;
        }
      }
    };
    try {
      await Promise.all(
        Array.from({ length: Math.min(Math.max(1, options.concurrency), Math.max(1, work.length)) }, worker),
      );
    } finally {
      progress.finish();
      await connections.end();
    }
    const order = new Map(plans.map((p, i) => [p.tenant, i]));
    const byOrder = (a: { tenant: string }, b: { tenant: string }): number =>
      order.get(a.tenant)! - order.get(b.tenant)!;
    report.succeeded.sort(byOrder);
    report.failed.sort(byOrder);
    report.durationMs = Date.now() - started;
    return report;
  } finally {
    await releaseRunLock(lockDb, registrySchema).catch(() => undefined);
  }
}
