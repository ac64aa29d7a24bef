// Tenant lifecycle verbs as typed functions (create, update, list, show, suspend, resume): what the CLI and the library run.
import os from 'node:os';
import pg from 'pg';
import { LifecycleAudit } from '../audit/lifecycle-audit.js';
import { quoteIdent, schemaForTenant } from '../auth/identity.js';
import { fetchStatus } from '../cli/status.js';
import type { Config } from '../config/schema.js';
import {
  createRoleOwnedSchema,
  createTenantRole,
  grantSchemaUse,
  grantTenantRole,
  type SqlRunner,
} from './provision.js';
import { ensureRegistry, RegistryTooNewError } from './registry-schema.js';
import { ensureCatalogFilter } from '../catalog/install.js';
import {
  cancelDeletion,
  certificateVerb,
  deleteTenantVerb,
  purgeVerb,
  type DeleteTenantOptions,
  type DeleteTenantResult,
  type DeletionCertificate,
  type DeletionContext,
  type PurgeResult,
} from './delete.js';
import {
  RegistryStore,
  schemaUsage,
  TENANT_STATUSES,
  TenantStatus,
  type LifecycleEvent,
  type TenantChange,
  type TenantRecord,
} from './registry-store.js';

export type TenantErrorCode =
  /** The id does not match tenancy.tenantPattern (or makes a schema/role name PostgreSQL would truncate). */
  | 'invalid_id'
  /** A bad option value (an unknown status, an empty reason). */
  | 'invalid_argument'
  /** admin.url is not set. */
  | 'not_configured'
  | 'not_found'
  /** The tenant's status does not allow the verb (a tenant being deleted cannot be suspended). */
  | 'wrong_status'
  /** Something in the database is in the way (a tenant role name taken by a login role). */
  | 'conflict'
  /** A step of create failed; everything create did was undone. */
  | 'step_failed'
  /** The database could not be reached or dropped the connection. */
  | 'unreachable'
  | 'registry_too_new'
  /** Any other error PostgreSQL reported. */
  | 'database';

/** Problems with what was asked (exit status 2), as opposed to what happened (1). */
const USAGE_CODES: ReadonlySet<TenantErrorCode> = new Set(['invalid_id', 'invalid_argument', 'not_configured']);

/** Every failure of a lifecycle verb: a code to branch on, a one-line message, and for create the failed step. */
export class TenantError extends Error {
  constructor(
    readonly code: TenantErrorCode,
    message: string,
    readonly step?: CreateStep,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TenantError';
  }

  /** The CLI's exit status: 2 for usage and configuration errors, 1 for runtime failures. */
  get exitStatus(): 1 | 2 {
    return USAGE_CODES.has(this.code) ? 2 : 1;
  }
}

/** The steps of create, in order; a failure names one of them. */
export type CreateStep = 'role' | 'schema' | 'grants' | 'migrations' | 'record';

export interface TenantAdminOptions {
  /** Who is acting, for the events table and the audit trail; default: the OS user. */
  actor?: string;
  /**
   * Fills a new tenant's schema inside create's transaction, after the grants; returns the migration version it
   * applied (recorded as migrationVersion). This is where the migrations runner plugs in. A failure undoes the
   * whole create, and names the step "migrations".
   */
  migrate?: (db: SqlRunner, tenant: { id: string; schema: string; role: string | null }) => Promise<string | null>;
  /**
   * Runs after create committed a new tenant, on the admin connection with no transaction open: the migrations that
   * cannot run in create's transaction (no-transaction files and what follows them). It drops the tenant again
   * before it throws; create then fails at step "migrations".
   */
  afterCreate?: (db: SqlRunner, created: CreatedTenant) => Promise<void>;
}

/** What afterCreate gets: the new tenant and what create took over rather than made. */
export interface CreatedTenant {
  tenant: { id: string; schema: string; role: string | null };
  adopted: { schema: boolean; role: boolean };
}

export interface CreateTenantOptions {
  tier?: string;
  canary?: boolean;
  issuer?: string;
}

export interface CreateTenantResult {
  /** `exists`: the tenant was already registered and nothing changed. */
  outcome: 'created' | 'exists';
  tenant: TenantRecord;
  /** The schema (or role) existed before create and was taken over rather than made. */
  adopted: { schema: boolean; role: boolean };
}

export interface UpdateTenantOptions {
  /** null clears. */
  tier?: string | null;
  canary?: boolean;
  /** null clears. */
  issuer?: string | null;
}

export interface UpdateTenantResult {
  outcome: 'updated' | 'unchanged';
  tenant: TenantRecord;
  changes: Partial<
    Record<'tier' | 'canary' | 'issuer', { from: string | boolean | null; to: string | boolean | null }>
  >;
}

export interface TenantDetails extends TenantRecord {
  /** Bytes of the schema's tables (with indexes and TOAST), materialized views and sequences. */
  sizeBytes: number;
  /** Tables in the schema (partitions count once, as their parent). */
  tables: number;
  /** Clients connected through the proxy of this config (its admin view), or null when that is not reachable. */
  connectedClients: number | null;
  /** Why connectedClients is null. */
  connectedClientsNote?: string;
}

export interface StatusChangeResult {
  /** `unchanged`: the tenant already had that status (and reason). */
  outcome: 'suspended' | 'resumed' | 'unchanged';
  tenant: TenantRecord;
}

const MAX_LABEL = 200;
/** PostgreSQL truncates longer identifiers (NAMEDATALEN - 1 bytes) rather than refusing them. */
const MAX_IDENTIFIER_BYTES = 63;

/**
 * The tenant's schema and role names for this config; throws TenantError invalid_id when the id does not match
 * tenancy.tenantPattern or the names would not fit PostgreSQL's identifier length.
 */
export function tenantNames(config: Config, id: string): { schema: string; role: string | null } {
  if (!new RegExp(config.tenancy.tenantPattern).test(id)) {
    throw new TenantError(
      'invalid_id',
      `tenant id ${JSON.stringify(id)} does not match tenancy.tenantPattern ${config.tenancy.tenantPattern}`,
    );
  }
  const schema = schemaForTenant(id, config.tenancy.schemaTemplate);
  const role = config.tenancy.roles ? schemaForTenant(id, config.tenancy.roleTemplate) : null;
  for (const name of [schema, role]) {
    if (name !== null && Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) {
      throw new TenantError(
        'invalid_id',
        `tenant id "${id}" makes the name "${name}", longer than PostgreSQL's ${MAX_IDENTIFIER_BYTES} bytes`,
      );
    }
  }
  return { schema, role };
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) < 0x20) return true;
  return false;
}

function checkLabel(name: string, value: string | null | undefined): void {
  if (value === null || value === undefined) return;
  if (value.length === 0 || value.length > MAX_LABEL || hasControlCharacter(value)) {
    throw new TenantError(
      'invalid_argument',
      `${name} must be 1 to ${MAX_LABEL} characters without control characters`,
    );
  }
}

/** A --issuer value: a label, and with auth.issuers configured one of their names (a typo would lock the tenant out). */
function checkIssuer(config: Config, value: string | null | undefined): void {
  checkLabel('issuer', value);
  const issuers = config.auth.issuers;
  if (value === null || value === undefined || issuers === undefined) return;
  if (!issuers.some((i) => i.name === value)) {
    throw new TenantError(
      'invalid_argument',
      `issuer "${value}" is not configured (auth.issuers: ${issuers.map((i) => i.name).join(', ')})`,
    );
  }
}

/** Validates a --status value. */
export function parseStatus(value: string): TenantStatus {
  if ((TENANT_STATUSES as readonly string[]).includes(value)) return value as TenantStatus;
  throw new TenantError('invalid_argument', `unknown status "${value}" (one of ${TENANT_STATUSES.join(', ')})`);
}

export function defaultActor(): string {
  try {
    return os.userInfo().username;
  } catch {
    // A container user with no passwd entry.
    return process.env['USER'] ?? `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}

/**
 * A session of lifecycle verbs over one admin connection (admin.url), with the registry created or upgraded when
 * it opens. Verbs called concurrently run one after another. close() when done.
 */
export class TenantAdmin {
  readonly actor: string;
  private readonly store: RegistryStore;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly config: Config,
    private readonly db: pg.Client,
    private readonly audit: LifecycleAudit,
    private readonly options: TenantAdminOptions,
  ) {
    this.actor = options.actor ?? defaultActor();
    this.store = new RegistryStore(config.tenancy.registry.schema);
  }

  /**
   * Connects as admin.url, creates or upgrades the registry and makes sure the proxy's login role (upstream.url) may
   * read it. Throws TenantError: not_configured without admin.url, unreachable when the database cannot be reached.
   */
  static async open(config: Config, options: TenantAdminOptions = {}): Promise<TenantAdmin> {
    const audit = new LifecycleAudit(config);
    let db: pg.Client;
    try {
      db = new pg.Client(adminClientConfig(config));
      // An error on an idle connection (server restart) surfaces on the next query; it must not crash the process.
      db.on('error', () => undefined);
      await db.connect().catch((err: unknown) => {
        throw unreachable(config, err);
      });
    } catch (err) {
      audit.close();
      throw err;
    }
    const admin = new TenantAdmin(config, db, audit, options);
    try {
      await admin.prepareRegistry();
    } catch (err) {
      await admin.close();
      throw err;
    }
    return admin;
  }

  private async prepareRegistry(): Promise<void> {
    const proxyRole = decodeURIComponent(new URL(this.config.upstream.url).username);
    try {
      const { rows } = await this.db.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [proxyRole]);
      if (rows.length === 0) {
        throw new TenantError(
          'conflict',
          `the proxy's login role "${proxyRole}" (upstream.url) does not exist; create it first`,
        );
      }
      const { from, to } = await ensureRegistry(this.db, this.store.schema, proxyRole);
      await ensureCatalogFilter(this.db, this.config); // catalog privacy views (src/catalog/install.ts)
      if (from !== to) {
        const event: LifecycleEvent = {
          actor: this.actor,
          verb: 'registry_upgrade',
          tenant: null,
          outcome: 'ok',
          details: { from, to, schema: this.store.schema },
        };
        await this.store.recordEvent(this.db, event);
        this.audit.write(event);
      }
    } catch (err) {
      throw toTenantError(err);
    }
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined);
    this.audit.close();
    await this.db.end().catch(() => undefined);
  }

  /** Registers a tenant: its role (tenancy.roles), schema, grants, then the record, all in one transaction. */
  async create(id: string, options: CreateTenantOptions = {}): Promise<CreateTenantResult> {
    const names = tenantNames(this.config, id);
    checkLabel('tier', options.tier);
    checkIssuer(this.config, options.issuer);
    const result = await this.createInTransaction(id, names, options);
    const afterCreate = this.options.afterCreate;
    if (result.outcome !== 'created' || afterCreate === undefined) return result;
    return this.run<CreateTenantResult>(
      'create_migrations',
      id,
      async (db) => {
        await step('migrations', () => afterCreate(db, { tenant: result.tenant, adopted: result.adopted }));
        return {
          result: { ...result, tenant: (await this.store.get(db, id)) ?? result.tenant },
          outcome: 'ok',
          details: {},
        };
      },
      false,
    );
  }

  private async createInTransaction(
    id: string,
    names: { schema: string; role: string | null },
    options: CreateTenantOptions,
  ): Promise<CreateTenantResult> {
    return this.run<CreateTenantResult>('create', id, async (db) => {
      const existing = await this.store.get(db, id, true);
      if (existing !== null) {
        refuseGone(existing);
        return {
          result: { outcome: 'exists', tenant: existing, adopted: { schema: false, role: false } },
          outcome: 'noop',
          details: { reason: 'already registered' },
        };
      }
      const { schema, role } = names;
      const proxyRole = decodeURIComponent(new URL(this.config.upstream.url).username);
      const adopted = { schema: false, role: false };
      if (role !== null) {
        await step('role', async () => {
          const { rows } = await db.query(
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
          adopted.role = !(await createTenantRole(db, role));
        });
      }
      await step('schema', async () => {
        const { rows } = await db.query('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1', [schema]);
        adopted.schema = rows.length > 0;
        if (role !== null) await createRoleOwnedSchema(db, { schema, role });
        else await db.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      });
      await step('grants', async () => {
        if (role !== null) await grantTenantRole(db, { role, proxyRole });
        else await grantSchemaUse(db, { schema, grantTo: proxyRole });
      });
      const migrationVersion = await step(
        'migrations',
        async () => (await this.options.migrate?.(db, { id, schema, role })) ?? null,
      );
      const tenant = await step('record', () =>
        this.store.insert(db, {
          id,
          schema,
          role,
          tier: options.tier ?? null,
          canary: options.canary ?? false,
          issuer: options.issuer ?? null,
          migrationVersion,
        }),
      );
      return {
        result: { outcome: 'created', tenant, adopted },
        outcome: 'ok',
        details: { schema, role, tier: tenant.tier, canary: tenant.canary, issuer: tenant.issuer, adopted },
      };
    });
  }

  /** Changes tier, canary or issuer; fields left out stay as they are. */
  async update(id: string, options: UpdateTenantOptions): Promise<UpdateTenantResult> {
    tenantNames(this.config, id);
    checkLabel('tier', options.tier);
    checkIssuer(this.config, options.issuer);
    return this.run<UpdateTenantResult>('update', id, async (db) => {
      const current = await this.mustGet(db, id, true);
      refuseGone(current);
      const change: TenantChange = {};
      const changes: UpdateTenantResult['changes'] = {};
      for (const key of ['tier', 'canary', 'issuer'] as const) {
        const next = options[key];
        if (next === undefined || next === current[key]) continue;
        (change as Record<string, unknown>)[key] = next;
        changes[key] = { from: current[key], to: next };
      }
      if (Object.keys(changes).length === 0) {
        return { result: { outcome: 'unchanged', tenant: current, changes }, outcome: 'noop', details: {} };
      }
      const tenant = await this.store.update(db, id, change);
      return { result: { outcome: 'updated', tenant, changes }, outcome: 'ok', details: { changes } };
    });
  }

  async list(options: { status?: TenantStatus } = {}): Promise<TenantRecord[]> {
    if (options.status !== undefined) parseStatus(options.status);
    return this.run<TenantRecord[]>(
      'list',
      null,
      async (db) => {
        const tenants = await this.store.list(db, options.status);
        return { result: tenants, outcome: 'ok', details: { status: options.status ?? null, count: tenants.length } };
      },
      false,
    );
  }

  async show(id: string): Promise<TenantDetails> {
    tenantNames(this.config, id);
    return this.run<TenantDetails>(
      'show',
      id,
      async (db) => {
        const tenant = await this.mustGet(db, id, false);
        const usage = await schemaUsage(db, tenant.schema);
        const clients = await connectedClients(this.config, id);
        return { result: { ...tenant, ...usage, ...clients }, outcome: 'ok', details: {} };
      },
      false,
    );
  }

  /**
   * Suspends the tenant: proxies sharing the registry refuse its new logins at once and end its sessions as their
   * transactions end (within 2 s). Data is untouched. Suspending again with another reason records the new reason.
   */
  async suspend(id: string, reason: string): Promise<StatusChangeResult> {
    tenantNames(this.config, id);
    if (reason.trim() === '') throw new TenantError('invalid_argument', 'a suspension needs a reason');
    checkLabel('reason', reason);
    return this.run<StatusChangeResult>('suspend', id, async (db) => {
      const current = await this.mustGet(db, id, true);
      refuseGone(current);
      if (current.status === TenantStatus.Suspended && current.suspendedReason === reason) {
        return { result: { outcome: 'unchanged', tenant: current }, outcome: 'noop', details: { reason } };
      }
      const tenant = await this.store.update(db, id, { status: TenantStatus.Suspended, suspendedReason: reason });
      return { result: { outcome: 'suspended', tenant }, outcome: 'ok', details: { reason, previous: current.status } };
    });
  }

  /** Lets a suspended tenant log in again; a tenant whose deletion is scheduled and not yet done is kept after all. */
  async resume(id: string): Promise<StatusChangeResult> {
    tenantNames(this.config, id);
    return this.run<StatusChangeResult>('resume', id, async (db) => {
      const current = await this.mustGet(db, id, true);
      if (current.status === TenantStatus.Deleting) {
        const cancelled = await cancelDeletion(db, this.store, id);
        return {
          result: { outcome: 'resumed', tenant: (await this.store.get(db, id))! },
          outcome: 'ok',
          details: { cancelledDeletion: cancelled },
        };
      }
      refuseGone(current);
      if (current.status === TenantStatus.Active)
        return { result: { outcome: 'unchanged', tenant: current }, outcome: 'noop', details: {} };
      const tenant = await this.store.update(db, id, { status: TenantStatus.Active, suspendedReason: null });
      return { result: { outcome: 'resumed', tenant }, outcome: 'ok', details: { reason: current.suspendedReason } };
    });
  }

  // Delete, purge, certificate (src/tenants/delete.ts)

  /** Deletes the tenant now, or with graceSeconds schedules it for `purge`; see deleteTenantVerb. */
  async delete(id: string, options: DeleteTenantOptions = {}): Promise<DeleteTenantResult> {
    tenantNames(this.config, id);
    return deleteTenantVerb(this.deletionContext(), id, options);
  }

  /** Completes every scheduled deletion whose grace period is over. */
  async purge(): Promise<PurgeResult> {
    return purgeVerb(this.deletionContext());
  }

  /** The deletion certificate of a deleted tenant. */
  async certificate(id: string): Promise<DeletionCertificate> {
    tenantNames(this.config, id);
    return certificateVerb(this.deletionContext(), id);
  }

  /** Runs a verb of another module (export, import) as this session runs its own: queued, evented, audited. */
  runVerb<T>(
    verb: string,
    tenant: string | null,
    body: (
      db: SqlRunner,
    ) => Promise<{ result: T; outcome: LifecycleEvent['outcome']; details: Record<string, unknown> }>,
    transaction = true,
  ): Promise<T> {
    return this.run(verb, tenant, body, transaction);
  }

  /** The admin options this session was opened with (export reopens one with a migrate step). */
  get adminOptions(): TenantAdminOptions {
    return this.options;
  }

  private deletionContext(): DeletionContext {
    return {
      config: this.config,
      store: this.store,
      actor: this.actor,
      run: (verb, tenant, body, transaction) => this.run(verb, tenant, body, transaction),
      fail: (code, message) => new TenantError(code, message),
    };
  }

  private async mustGet(db: SqlRunner, id: string, lock: boolean): Promise<TenantRecord> {
    const tenant = await this.store.get(db, id, lock);
    if (tenant === null) throw new TenantError('not_found', `tenant "${id}" is not registered`);
    return tenant;
  }

  /**
   * Runs one verb after any still running: in a transaction whose last statement records the event (so the change
   * and its record commit together), or, for reads, without one. A failure rolls back, is recorded as an event of
   * its own when the database still answers, and rethrown as a TenantError. The audit file gets either.
   */
  private run<T>(
    verb: string,
    tenant: string | null,
    body: (
      db: SqlRunner,
    ) => Promise<{ result: T; outcome: LifecycleEvent['outcome']; details: Record<string, unknown> }>,
    transaction = true,
  ): Promise<T> {
    const task = async (): Promise<T> => {
      const db = this.db;
      let event: LifecycleEvent;
      let result: T;
      try {
        if (transaction) {
          await db.query('BEGIN');
          // Two creates of one id, or a suspend racing a create, take turns; other tenants are not held up.
          await db.query('SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1), pg_catalog.hashtext($2))', [
            `pg-tenant-proxy tenant ${this.store.schema}`,
            tenant ?? '',
          ]);
        }
        const done = await body(db);
        event = { actor: this.actor, verb, tenant, outcome: done.outcome, details: done.details };
        await this.store.recordEvent(db, event);
        if (transaction) await db.query('COMMIT');
        result = done.result;
      } catch (err) {
        if (transaction) await db.query('ROLLBACK').catch(() => undefined);
        const error = toTenantError(err);
        const failed: LifecycleEvent = {
          actor: this.actor,
          verb,
          tenant,
          outcome: 'error',
          details: { error: error.message, code: error.code, ...(error.step !== undefined && { step: error.step }) },
        };
        await this.store.recordEvent(db, failed).catch(() => undefined);
        this.audit.write(failed);
        throw error;
      }
      this.audit.write(event);
      return result;
    };
    const next = this.queue.then(task, task);
    this.queue = next.catch(() => undefined);
    return next;
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

function refuseGone(tenant: TenantRecord): void {
  if (tenant.status === TenantStatus.Deleting)
    throw new TenantError('wrong_status', `tenant "${tenant.id}" is being deleted`);
  if (tenant.status === TenantStatus.Deleted)
    throw new TenantError('wrong_status', `tenant "${tenant.id}" was deleted; its id cannot be used again`);
}

export function adminClientConfig(config: Config): pg.ClientConfig {
  if (config.admin.url === undefined) {
    throw new TenantError(
      'not_configured',
      'admin.url is not set: the tenant commands need a privileged connection of their own (admin.url, PGTP_ADMIN_URL)',
    );
  }
  const url = new URL(config.admin.url);
  // As upstream.password does for upstream.url: the URL's password, if any, is replaced.
  if (config.admin.password !== undefined) url.password = encodeURIComponent(config.admin.password);
  return {
    connectionString: url.toString(),
    application_name: 'pg-tenant-proxy tenants',
    connectionTimeoutMillis: config.upstream.connectTimeoutMs,
  };
}

function unreachable(config: Config, err: unknown): TenantError {
  const url = new URL(config.admin.url!);
  const where = `${decodeURIComponent(url.username)}@${url.hostname || 'localhost'}:${url.port || 5432}/${decodeURIComponent(url.pathname.slice(1))}`;
  const message = (err as Error).message || String((err as { code?: string }).code ?? err);
  return new TenantError(
    'unreachable',
    `cannot connect to the database as ${where} (admin.url): ${message}`,
    undefined,
    { cause: err },
  );
}

/** Connection-level failures (refused, reset, terminated, shutting down) versus errors PostgreSQL answered with. */
function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  if (code === undefined)
    return /Connection terminated|not queryable|ECONN|EPIPE|timeout/i.test((err as Error).message ?? '');
  return code.startsWith('08') || code.startsWith('57P') || code.startsWith('E');
}

function toTenantError(err: unknown): TenantError {
  if (err instanceof TenantError) return err;
  if (err instanceof RegistryTooNewError)
    return new TenantError('registry_too_new', err.message, undefined, { cause: err });
  const message = (err as Error).message ?? String(err);
  if (isConnectionError(err))
    return new TenantError('unreachable', `lost the database connection: ${message}`, undefined, { cause: err });
  return new TenantError('database', message, undefined, { cause: err });
}

async function connectedClients(
  config: Config,
  id: string,
): Promise<Pick<TenantDetails, 'connectedClients' | 'connectedClientsNote'>> {
  if (!config.metrics.enabled || config.metrics.adminToken === undefined) {
    return {
      connectedClients: null,
      connectedClientsNote: 'no admin view to ask: metrics.enabled and metrics.adminToken are not both set',
    };
  }
  try {
    const status = await fetchStatus(config);
    return { connectedClients: status.tenants.find((t) => t.tenant === id)?.clients ?? 0 };
  } catch (err) {
    return { connectedClients: null, connectedClientsNote: (err as Error).message };
  }
}

/** Opens a TenantAdmin, runs `work` with it and closes it. */
export async function withTenantAdmin<T>(
  config: Config,
  options: TenantAdminOptions,
  work: (admin: TenantAdmin) => Promise<T>,
): Promise<T> {
  const admin = await TenantAdmin.open(config, options);
  try {
    return await work(admin);
  } finally {
    await admin.close();
  }
}

// One call, one connection: for a service that onboards a tenant now and then. For many calls in a row, open a
// TenantAdmin once and call its methods.

export async function createTenant(
  config: Config,
  id: string,
  options: CreateTenantOptions & TenantAdminOptions = {},
): Promise<CreateTenantResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.create(id, options));
}

export async function updateTenant(
  config: Config,
  id: string,
  options: UpdateTenantOptions & TenantAdminOptions,
): Promise<UpdateTenantResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.update(id, options));
}

export async function listTenants(
  config: Config,
  options: { status?: TenantStatus } & TenantAdminOptions = {},
): Promise<TenantRecord[]> {
  return withTenantAdmin(config, options, (admin) => admin.list(options));
}

export async function showTenant(config: Config, id: string, options: TenantAdminOptions = {}): Promise<TenantDetails> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.show(id));
}

export async function suspendTenant(
  config: Config,
  id: string,
  reason: string,
  options: TenantAdminOptions = {},
): Promise<StatusChangeResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.suspend(id, reason));
}

export async function resumeTenant(
  config: Config,
  id: string,
  options: TenantAdminOptions = {},
): Promise<StatusChangeResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.resume(id));
}
