// The library entry (`import … from 'pg-tenant-proxy'`): configuration and the tenant lifecycle verbs, as the CLI runs them.
export { ConfigError, loadConfig, validateConfig } from './config/load.js';
export type { Config, ConfigInput } from './config/schema.js';
export { TenantAdmin, withTenantAdmin } from './tenants/lifecycle.js';
export { TenantError } from './tenants/tenant-error.js';
export type { CreateStep, TenantErrorCode } from './tenants/tenant-error.js';
export { tenantNames } from './tenants/tenant-input.js';
export {
  createTenant,
  listTenants,
  resumeTenant,
  showTenant,
  suspendTenant,
  updateTenant,
} from './tenants/lifecycle-api.js';
export type {
  CreateTenantOptions,
  CreateTenantResult,
  StatusChangeResult,
  TenantAdminOptions,
  TenantDetails,
  UpdateTenantOptions,
  UpdateTenantResult,
} from './tenants/lifecycle-types.js';
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
export type {
  DumpManifest,
  ExportFormat,
  ExportResult,
  ImportResult,
  JsonlManifest,
} from './tenants/export-manifest.js';
// Migrations: a new tenant created through the library gets every migration of tenancy.migrationsDir when these
// hooks are passed to TenantAdmin.open / createTenant, as `tenants create` does.
export { createMigrationHooks } from './migrations/create-hooks.js';
