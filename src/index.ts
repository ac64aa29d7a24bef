// The library entry (`import … from 'pg-tenant-proxy'`): configuration and the tenant lifecycle verbs, as the CLI runs them.
export { ConfigError, loadConfig, validateConfig } from './config/load.js';
export type { Config, ConfigInput } from './config/schema.js';
export {
  createTenant,
  listTenants,
  resumeTenant,
  showTenant,
  suspendTenant,
  TenantAdmin,
  TenantError,
  tenantNames,
  updateTenant,
  withTenantAdmin,
} from './tenants/lifecycle.js';
export type {
  CreateStep,
  CreateTenantOptions,
  CreateTenantResult,
  StatusChangeResult,
  TenantAdminOptions,
  TenantDetails,
  TenantErrorCode,
  UpdateTenantOptions,
  UpdateTenantResult,
} from './tenants/lifecycle.js';
export { REGISTRY_VERSION } from './tenants/registry-schema.js';
export { TENANT_STATUSES, TenantStatus } from './tenants/registry-store.js';
export type { TenantRecord } from './tenants/registry-store.js';
// Delete, purge, certificate, export, import.
export { deleteTenant, exportTenant, importTenant, purgeTenants, tenantCertificate } from './tenants/lifecycle-api.js';
export { parseDuration } from './tenants/delete.js';
export type {
  DeleteTenantOptions,
  DeleteTenantResult,
  DeletionCertificate,
  DeletionCheck,
  DeletionExport,
  PurgeResult,
} from './tenants/delete.js';
export type { DumpManifest, ExportFormat, ExportResult, ImportResult, JsonlManifest } from './tenants/export.js';
// Migrations: a new tenant created through the library gets every migration of tenancy.migrationsDir when these
// hooks are passed to TenantAdmin.open / createTenant, as `tenants create` does.
export { createMigrationHooks } from './migrations/create-hooks.js';
