// One-call library functions: each verb (create, update, list, show, suspend, resume, delete, purge, certificate,
// export, import) over a connection of its own.
import type { Config } from '../config/schema.js';
import type { DeleteTenantOptions, DeleteTenantResult, DeletionCertificate, PurgeResult } from './delete.js';
import { exportTenant as exportWith } from './export.js';
import type { ExportFormat, ExportResult, ImportResult } from './export-manifest.js';
import { importTenant as importWith } from './import.js';
import { withTenantAdmin, type TenantAdmin } from './lifecycle.js';
import type {
  CreateTenantOptions,
  CreateTenantResult,
  StatusChangeResult,
  TenantAdminOptions,
  TenantDetails,
  UpdateTenantOptions,
  UpdateTenantResult,
} from './lifecycle-types.js';
import type { TenantRecord, TenantStatus } from './registry-store.js';
import { tenantNames } from './tenant-input.js';

// One call, one connection: for a service that onboards a tenant now and then. For many calls in a row, open a
// TenantAdmin once and call its methods.

/** Checks the tenant id first (a bad id fails without connecting), then runs `work` in a session of its own. */
async function forTenant<T>(
  config: Config,
  id: string,
  options: TenantAdminOptions,
  work: (admin: TenantAdmin) => Promise<T>,
): Promise<T> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, work);
}

export async function createTenant(
  config: Config,
  id: string,
  options: CreateTenantOptions & TenantAdminOptions = {},
): Promise<CreateTenantResult> {
  return forTenant(config, id, options, (admin) => admin.create(id, options));
}

export async function updateTenant(
  config: Config,
  id: string,
  options: UpdateTenantOptions & TenantAdminOptions,
): Promise<UpdateTenantResult> {
  return forTenant(config, id, options, (admin) => admin.update(id, options));
}

export async function listTenants(
  config: Config,
  options: { status?: TenantStatus } & TenantAdminOptions = {},
): Promise<TenantRecord[]> {
  return withTenantAdmin(config, options, (admin) => admin.list(options));
}

export async function showTenant(config: Config, id: string, options: TenantAdminOptions = {}): Promise<TenantDetails> {
  return forTenant(config, id, options, (admin) => admin.show(id));
}

export async function suspendTenant(
  config: Config,
  id: string,
  reason: string,
  options: TenantAdminOptions = {},
): Promise<StatusChangeResult> {
  return forTenant(config, id, options, (admin) => admin.suspend(id, reason));
}

export async function resumeTenant(
  config: Config,
  id: string,
  options: TenantAdminOptions = {},
): Promise<StatusChangeResult> {
  return forTenant(config, id, options, (admin) => admin.resume(id));
}

/** Deletes a tenant now (or schedules it with graceSeconds); the result carries the deletion certificate. */
export async function deleteTenant(
  config: Config,
  id: string,
  options: DeleteTenantOptions & TenantAdminOptions = {},
): Promise<DeleteTenantResult> {
  return forTenant(config, id, options, (admin) => admin.delete(id, options));
}

/** Completes every scheduled deletion whose grace period is over. */
export async function purgeTenants(config: Config, options: TenantAdminOptions = {}): Promise<PurgeResult> {
  return withTenantAdmin(config, options, (admin) => admin.purge());
}

export async function tenantCertificate(
  config: Config,
  id: string,
  options: TenantAdminOptions = {},
): Promise<DeletionCertificate> {
  return forTenant(config, id, options, (admin) => admin.certificate(id));
}

export async function exportTenant(
  config: Config,
  id: string,
  options: { out: string; format?: ExportFormat } & TenantAdminOptions,
): Promise<ExportResult> {
  return forTenant(config, id, options, (admin) => exportWith(admin, id, options));
}

export async function importTenant(
  config: Config,
  id: string,
  options: { from: string } & TenantAdminOptions,
): Promise<ImportResult> {
  return forTenant(config, id, options, (admin) => importWith(admin, id, options));
}
