// The shares of the tenants this process serves: created at login, kept current on registry changes and reloads.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { effectiveLimits, workerShare, type LimitOverrides } from './limits.js';
import { LimitErrors } from './errors.js';
import { TenantShare } from './share.js';

/** What the registry records of a tenant that bears on its limits. */
export interface LimitRecord {
  tier: string | null;
  limits: LimitOverrides | null;
}

export class TenantLimits {
  private readonly shares = new Map<string, TenantShare>();

  constructor(
    private config: Config['limits'],
    private readonly metrics: ProxyMetrics,
    private readonly log: Logger,
    private readonly worker: { index: number; count: number } = { index: 0, count: 1 },
  ) {}

  /**
   * A client of the tenant logs in: its share (created on first use) with the client counted, or the FATAL 53300
   * when the tenant is at limits.maxClients. The record is the one admission just read, so it is current.
   */
  join(tenantId: string, record: LimitRecord): TenantShare {
    let share = this.shares.get(tenantId);
    if (share === undefined) {
      share = new TenantShare(tenantId, this.metrics.tenant(tenantId));
      this.shares.set(tenantId, share);
    }
    this.apply(share, record);
    const max = share.limits.maxClients;
    if (max > 0 && share.clients >= max) {
      share.meter.limitRefused('max_clients');
      this.forgetIfUnused(share);
      throw LimitErrors.tooManyClients(tenantId, max);
    }
    share.clients++;
    return share;
  }

  /** A client of the share's tenant left. */
  leave(share: TenantShare): void {
    share.clients--;
    this.forgetIfUnused(share);
  }

  /** The registry's record of a tenant changed (null: gone): its sessions' limits follow at once. */
  changed(tenantId: string, record: LimitRecord | null): void {
    const share = this.shares.get(tenantId);
    if (share !== undefined && record !== null) this.apply(share, record);
  }

  /** SIGHUP: limits.default and limits.tiers again for every tenant. */
  reconfigure(config: Config['limits']): void {
    this.config = config;
    for (const share of this.shares.values()) this.apply(share, { tier: share.tier, limits: share.overrides });
  }

  /** Held servers and waiting transactions by tenant label, for the metrics. */
  *counts(): Iterable<{ tenant: string; held: number; waiting: number }> {
    for (const share of this.shares.values())
      yield { tenant: share.meter.label, held: share.held, waiting: share.waiting };
  }

  private apply(share: TenantShare, record: LimitRecord): void {
    share.tier = record.tier;
    share.overrides = record.limits;
    const { limits } = effectiveLimits(this.config, record.tier, record.limits);
    const mine = workerShare(limits, this.worker.index, this.worker.count);
    const before = share.limits;
    share.setLimits(mine);
    if (share.clients > 0 && JSON.stringify(before) !== JSON.stringify(mine))
      this.log.info({ tenant: share.tenantId, limits: mine }, 'tenant limits changed');
  }

  /**
   * A share nobody uses is dropped so the map stays as small as the set of connected tenants; a server it still
   * holds (parked) keeps its own reference until reset, which no longer counts against a new share.
   */
  private forgetIfUnused(share: TenantShare): void {
    if (share.clients === 0 && share.waiting === 0 && this.shares.get(share.tenantId) === share)
      this.shares.delete(share.tenantId);
  }
}
