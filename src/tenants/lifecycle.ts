// TenantAdmin: a session of lifecycle verbs over one admin connection (create, update, list, show, suspend, resume, delete…).
import type pg from 'pg';
import { LifecycleAudit } from '../audit/lifecycle-audit.js';
import { ensureCatalogFilter } from '../catalog/install.js';
import type { Config } from '../config/schema.js';
import { defaultActor } from './actor.js';
import { connectAdmin, proxyRoleOf } from './admin-connection.js';
import { connectedClients } from './connected-clients.js';
import { createVerb } from './create.js';
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
import type {
  CreateTenantOptions,
  CreateTenantResult,
  StatusChangeResult,
  TenantAdminOptions,
  TenantDetails,
  UpdateTenantOptions,
  UpdateTenantResult,
} from './lifecycle-types.js';
import type { SqlRunner } from './provision.js';
import { ensureRegistry } from './registry-schema.js';
import {
  RegistryStore,
  schemaUsage,
  TenantStatus,
  type LifecycleEvent,
  type TenantChange,
  type TenantRecord,
} from './registry-store.js';
import { refuseGone, TenantError, toTenantError } from './tenant-error.js';
import { checkIssuer, checkLabel, parseStatus, tenantNames } from './tenant-input.js';
import { VerbRunner, type VerbBody } from './verb-runner.js';
import { DEFAULT_UPSTREAM } from '../config/schema.js';
import { routeInfo, type TenantRouteInfo } from '../routing/route-info.js';
import { withUpstreamAdmin } from '../routing/upstream-admin.js';

/**
 * A session of lifecycle verbs over one admin connection (admin.url), with the registry created or upgraded when
 * it opens. Verbs called concurrently run one after another. close() when done.
 */
export class TenantAdmin {
  readonly actor: string;
  private readonly store: RegistryStore;
  private readonly runner: VerbRunner;

  private constructor(
    readonly config: Config,
    private readonly db: pg.Client,
    private readonly audit: LifecycleAudit,
    private readonly options: TenantAdminOptions,
  ) {
    this.actor = options.actor ?? defaultActor();
    this.store = new RegistryStore(config.tenancy.registry.schema);
    this.runner = new VerbRunner(db, this.store, audit, this.actor);
  }

  /**
   * Connects as admin.url, creates or upgrades the registry and makes sure the proxy's login role (upstream.url) may
   * read it. Throws TenantError: not_configured without admin.url, unreachable when the database cannot be reached.
   */
  static async open(config: Config, options: TenantAdminOptions = {}): Promise<TenantAdmin> {
    const audit = new LifecycleAudit(config);
    let db: pg.Client;
    try {
      db = await connectAdmin(config);
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
    const proxyRole = proxyRoleOf(this.config);
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
    await this.runner.idle();
    this.audit.close();
    await this.db.end().catch(() => undefined);
  }

  /** Registers a tenant: its role (tenancy.roles), schema, grants, then the record, all in one transaction. */
  async create(id: string, options: CreateTenantOptions = {}): Promise<CreateTenantResult> {
    return createVerb(
      { config: this.config, store: this.store, runner: this.runner, options: this.options },
      id,
      options,
    );
  }

  /** Changes tier, canary or issuer; fields left out stay as they are. */
  async update(id: string, options: UpdateTenantOptions): Promise<UpdateTenantResult> {
    tenantNames(this.config, id);
    checkLabel('tier', options.tier);
    checkIssuer(this.config, options.issuer);
    return this.runner.run<UpdateTenantResult>('update', id, async (db) => {
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

  /** Where the tenant's transactions go: its upstream, that upstream's database (or its own) and its placement. */
  async route(id: string): Promise<TenantRouteInfo> {
    tenantNames(this.config, id);
    return this.runner.run<TenantRouteInfo>(
      'route',
      id,
      async (db) => {
        const tenant = await this.mustGet(db, id, false);
        return { result: routeInfo(this.config, tenant), outcome: 'ok', details: {} };
      },
      false,
    );
  }

  async list(options: { status?: TenantStatus } = {}): Promise<TenantRecord[]> {
    if (options.status !== undefined) parseStatus(options.status);
    return this.runner.run<TenantRecord[]>(
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
    return this.runner.run<TenantDetails>(
      'show',
      id,
      async (db) => {
        const tenant = await this.mustGet(db, id, false);
        // The schema is measured where it lives.
        const usage =
          tenant.upstream === DEFAULT_UPSTREAM
            ? await schemaUsage(db, tenant.schema)
            : await withUpstreamAdmin(this.config, tenant.upstream, (udb) => schemaUsage(udb, tenant.schema));
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
    return this.runner.run<StatusChangeResult>('suspend', id, async (db) => {
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
    return this.runner.run<StatusChangeResult>('resume', id, async (db) => {
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
  runVerb<T>(verb: string, tenant: string | null, body: VerbBody<T>, transaction = true): Promise<T> {
    return this.runner.run(verb, tenant, body, transaction);
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
      run: (verb, tenant, body, transaction) => this.runner.run(verb, tenant, body, transaction),
      fail: (code, message) => new TenantError(code, message),
    };
  }

  private async mustGet(db: SqlRunner, id: string, lock: boolean): Promise<TenantRecord> {
    const tenant = await this.store.get(db, id, lock);
    if (tenant === null) throw new TenantError('not_found', `tenant "${id}" is not registered`);
    return tenant;
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
