// The options and results of the lifecycle verbs (create, update, show, suspend, resume) and of a TenantAdmin session.
import type { SqlRunner } from './provision.js';
import type { TenantRecord } from './registry-store.js';

export interface TenantAdminOptions {
  /** Who is acting, for the events table and the audit trail; default: the OS user. */
  actor?: string;
  /**
   * Fills a new tenant's schema inside create's transaction, after the grants; returns the migration version it
   * applied (recorded as migrationVersion). This is where the migrations runner plugs in. A failure undoes the
   * whole create, and names the step "migrations".
   */
  migrate?: (
    db: SqlRunner,
    tenant: { id: string; schema: string; role: string | null; upstream?: string },
    /** Where the registry is, when `db` is another upstream's connection (migration tracking is recorded there). */
    registryDb?: SqlRunner,
  ) => Promise<string | null>;
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
  /** The upstream (a name of the config) whose cluster holds the tenant; default: `default`. */
  upstream?: string;
  /** Recorded as placement `dedicated` (an instance of its own) rather than `shared`. */
  dedicated?: boolean;
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
