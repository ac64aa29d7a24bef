// `tenants limits`: a tenant's own limits in the registry (the limits column), and its effective limits with sources.
import { quoteIdent } from '../auth/identity.js';
import type { TenantAdmin } from '../tenants/lifecycle.js';
import { TenantError } from '../tenants/tenant-error.js';
import { tenantNames } from '../tenants/tenant-input.js';
import {
  effectiveLimits,
  LIMIT_KEYS,
  parseOverrides,
  type LimitKey,
  type LimitOverrides,
  type LimitSource,
} from './limits.js';

/** What to change: keys to set (0: explicitly no limit), keys to drop back to the tier/default, or everything. */
export interface LimitsChange {
  set: LimitOverrides;
  inherit: LimitKey[];
  clear: boolean;
}

export interface TenantLimitsResult {
  tenant: string;
  tier: string | null;
  outcome: 'updated' | 'unchanged';
  /** The tenant's own overrides as now recorded. */
  overrides: LimitOverrides;
  /** Every limit as the proxy applies it (0: no limit), and where it comes from (with this command's config). */
  effective: Record<LimitKey, { value: number; source: LimitSource }>;
}

/**
 * Reads and changes one tenant's overrides. Proxies sharing the registry pick the change up through the row's
 * NOTIFY (or the change counter) within about a second and apply it to the tenant's connected sessions.
 */
export async function tenantLimitsVerb(
  admin: TenantAdmin,
  id: string,
  change: LimitsChange,
): Promise<TenantLimitsResult> {
  const config = admin.config;
  tenantNames(config, id);
  const table = `${quoteIdent(config.tenancy.registry.schema)}.tenants`;
  const writes = change.clear || change.inherit.length > 0 || Object.keys(change.set).length > 0;
  return admin.runVerb<TenantLimitsResult>(
    'limits',
    id,
    async (db) => {
      const { rows } = await db.query(
        `SELECT status, tier, limits FROM ${table} WHERE id = $1${writes ? ' FOR UPDATE' : ''}`,
        [id],
      );
      const row = rows[0] as { status: string; tier: string | null; limits: unknown } | undefined;
      if (row === undefined) throw new TenantError('not_found', `tenant "${id}" is not registered`);
      if (row.status === 'deleting' || row.status === 'deleted')
        throw new TenantError(
          'wrong_status',
          `tenant "${id}" is ${row.status === 'deleted' ? 'deleted' : 'being deleted'}`,
        );
      const before = parseOverrides(row.limits) ?? {};
      const next: LimitOverrides = change.clear ? {} : { ...before };
      for (const key of change.inherit) delete next[key];
      Object.assign(next, change.set);
      const changed = JSON.stringify(sorted(before)) !== JSON.stringify(sorted(next));
      if (changed)
        await db.query(`UPDATE ${table} SET limits = $2, updated_at = now() WHERE id = $1`, [id, JSON.stringify(next)]);
      const { limits, source } = effectiveLimits(config.limits, row.tier, next);
      const effective = {} as TenantLimitsResult['effective'];
      for (const key of LIMIT_KEYS) effective[key] = { value: limits[key], source: source[key] };
      const result: TenantLimitsResult = {
        tenant: id,
        tier: row.tier,
        outcome: changed ? 'updated' : 'unchanged',
        overrides: sorted(next),
        effective,
      };
      return { result, outcome: changed ? 'ok' : 'noop', details: changed ? { from: before, to: next } : {} };
    },
    writes,
  );
}

function sorted(overrides: LimitOverrides): LimitOverrides {
  const out: LimitOverrides = {};
  for (const key of LIMIT_KEYS) if (overrides[key] !== undefined) out[key] = overrides[key];
  return out;
}
