// `tenants route ID`: a tenant's route as the registry records it, with the database resolved from the config.
import type { Config } from '../config/schema.js';
import type { TenantRecord } from '../tenants/registry-store.js';
import { upstreamSettings, type Placement } from './route.js';

export interface TenantRouteInfo {
  tenant: string;
  upstream: string;
  /** The database its transactions run in: the route's own, else the upstream url's. */
  database: string;
  placement: Placement;
  /** false: this config has no upstream by that name, so its proxies refuse the tenant's logins. */
  configured: boolean;
}

export function routeInfo(config: Config, tenant: TenantRecord): TenantRouteInfo {
  const settings = upstreamSettings(config, tenant.upstream);
  const urlDatabase =
    settings === undefined ? null : decodeURIComponent(new URL(settings.url).pathname.slice(1)) || null;
  return {
    tenant: tenant.id,
    upstream: tenant.upstream,
    database: tenant.database ?? urlDatabase ?? '?',
    placement: tenant.placement,
    configured: settings !== undefined,
  };
}

export function renderRoute(info: TenantRouteInfo): string {
  const rows: Array<[string, string]> = [
    ['tenant', info.tenant],
    ['upstream', info.configured ? info.upstream : `${info.upstream} (not in this configuration)`],
    ['database', info.database],
    ['placement', info.placement],
  ];
  return rows.map(([k, v]) => `${k.padEnd(9)}  ${v}`).join('\n') + '\n';
}
