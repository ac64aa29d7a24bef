// What limits a tenant has: limits.default, replaced key by key by its tier's, then by its own registry overrides.
import { LIMIT_KEYS, type Config } from '../config/schema.js';

export { LIMIT_KEYS };
export type LimitKey = (typeof LIMIT_KEYS)[number];
/** Every key set; 0 means no limit. */
export type Limits = Record<LimitKey, number>;
export type LimitOverrides = Partial<Limits>;
export type LimitSource = 'tenant' | 'tier' | 'default';

export interface EffectiveLimits {
  limits: Limits;
  /** Where each value comes from, for `tenants limits` and the logs. */
  source: Record<LimitKey, LimitSource>;
}

export const NO_LIMITS: Readonly<Limits> = Object.freeze({
  maxServers: 0,
  maxClients: 0,
  maxWaiting: 0,
  statementTimeoutMs: 0,
  idleInTransactionTimeoutMs: 0,
  transactionsPerSecond: 0,
});

export function effectiveLimits(
  config: Config['limits'],
  tier: string | null,
  overrides: LimitOverrides | null,
): EffectiveLimits {
  const tierLimits = tier === null ? undefined : config.tiers[tier];
  const limits = { ...NO_LIMITS };
  const source = {} as Record<LimitKey, LimitSource>;
  for (const key of LIMIT_KEYS) {
    const own = overrides?.[key];
    const fromTier = tierLimits?.[key];
    if (own !== undefined) {
      limits[key] = own;
      source[key] = 'tenant';
    } else if (fromTier !== undefined) {
      limits[key] = fromTier;
      source[key] = 'tier';
    } else {
      limits[key] = config.default[key];
      source[key] = 'default';
    }
  }
  return { limits, source };
}

/**
 * The overrides a registry row's `limits` column holds. The CLI writes only valid ones; anything else in the column
 * (a hand edit) is ignored key by key rather than refusing the tenant's logins.
 */
export function parseOverrides(value: unknown): LimitOverrides | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const out: LimitOverrides = {};
  let any = false;
  for (const key of LIMIT_KEYS) {
    const v = (value as Record<string, unknown>)[key];
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) {
      out[key] = v;
      any = true;
    }
  }
  return any ? out : null;
}

/**
 * This worker's part of a tenant's count limits when `count` workers share the listen port (as upstream.poolSize
 * is shared): the parts add up to the limit, and no worker gets 0 (which would mean no limit) from a positive one.
 */
export function workerShare(limits: Limits, index: number, count: number): Limits {
  if (count <= 1) return limits;
  const part = (total: number): number =>
    total === 0 ? 0 : Math.max(1, Math.floor(total / count) + (index < total % count ? 1 : 0));
  return {
    ...limits,
    maxServers: part(limits.maxServers),
    maxClients: part(limits.maxClients),
    maxWaiting: part(limits.maxWaiting),
    transactionsPerSecond: part(limits.transactionsPerSecond),
  };
}
