// One-call library functions for the deletion and export verbs (delete, purge, certificate, export, import).
import type { Config } from '../config/schema.js';
import type { DeleteTenantOptions, DeleteTenantResult, DeletionCertificate, PurgeResult } from './delete.js';
import {
  exportTenant as exportWith,
  importTenant as importWith,
  type ExportFormat,
  type ExportResult,
  type ImportResult,
} from './export.js';
import { tenantNames, withTenantAdmin, type TenantAdminOptions } from './lifecycle.js';

/** Deletes a tenant now (or schedules it with graceSeconds); the result carries the deletion certificate. */
export async function deleteTenant(
  config: Config,
  id: string,
  options: DeleteTenantOptions & TenantAdminOptions = {},
): Promise<DeleteTenantResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.delete(id, options));
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
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => admin.certificate(id));
}

export async function exportTenant(
  config: Config,
  id: string,
  options: { out: string; format?: ExportFormat } & TenantAdminOptions,
): Promise<ExportResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => exportWith(admin, id, options));
}

export async function importTenant(
  config: Config,
  id: string,
  options: { from: string } & TenantAdminOptions,
): Promise<ImportResult> {
  tenantNames(config, id);
  return withTenantAdmin(config, options, (admin) => importWith(admin, id, options));
}
