// The upstreams of one proxy process: a backend pool per upstream (and per dedicated database), found by a tenant's route.
import type pg from 'pg';
import type { Logger } from 'pino';
import { targetOf, type UpstreamTarget } from '../backend/connect.js';
import { Pool, poolOptions, type PoolEvents, type PoolStats } from '../backend/pool.js';
import { DEFAULT_UPSTREAM, type Config } from '../config/schema.js';
import type { ProxyMetrics } from '../metrics/metrics.js';
import { controlPool } from '../tenants/registry.js';
import { routeLabel, upstreamSettings, type TenantRoute } from './route.js';

/** One upstream's pool and its small control pool (startup-setting checks, readiness). */
export interface Upstream {
  /** `default`, a name of `upstreams`, or name/database for a route that names a database of its own. */
  readonly label: string;
  readonly name: string;
  readonly target: UpstreamTarget;
  readonly pool: Pool;
  readonly control: pg.Pool;
}

export type UpstreamStats = PoolStats & { size: number; upstream: string };

/**
 * Owns every pool. The set of upstreams is fixed at start (a reload changes their sizes and timeouts only); a route
 * naming a database other than its upstream's gets a pool of its own on first use, sized as its upstream's, as
 * PgBouncer sizes a pool per database.
 */
export class Upstreams {
  private readonly byLabel = new Map<string, Upstream>();
  /** Names the running config has (a reload that adds one is logged and ignored). */
  private readonly names: ReadonlySet<string>;
  readonly default: Upstream;

  constructor(
    private config: Config,
    private readonly log: Logger,
    private readonly metrics: ProxyMetrics,
  ) {
    this.names = new Set([DEFAULT_UPSTREAM, ...Object.keys(config.upstreams)]);
    this.default = this.open(DEFAULT_UPSTREAM, null)!;
    for (const name of this.names) if (name !== DEFAULT_UPSTREAM) this.open(name, null);
  }

  /** The upstream a route goes to, or null when this proxy's config has no upstream by that name. */
  resolve(route: TenantRoute): Upstream | null {
    const known = this.byLabel.get(routeLabel(route));
    if (known !== undefined) return known;
    if (!this.names.has(route.upstream)) return null;
    // The upstream's own database, spelled out, is its pool, not a second one.
    const base = this.byLabel.get(route.upstream)!;
    if (route.database === base.target.database) return base;
    return this.open(route.upstream, route.database);
  }

  all(): IterableIterator<Upstream> {
    return this.byLabel.values();
  }

  stats(): UpstreamStats[] {
    return [...this.byLabel.values()].map((u) => ({
      ...u.pool.stats(),
      size: upstreamSettings(this.config, u.name)?.poolSize ?? 0,
      upstream: u.label,
    }));
  }

  maintain(): void {
    for (const u of this.byLabel.values()) u.pool.maintain();
  }

  /** Applies a reloaded config's sizes and timeouts; upstreams added or removed there wait for a restart. */
  reconfigure(next: Config): void {
    const nextNames = new Set([DEFAULT_UPSTREAM, ...Object.keys(next.upstreams)]);
    const added = [...nextNames].filter((n) => !this.names.has(n));
    const removed = [...this.names].filter((n) => !nextNames.has(n));
    if (added.length > 0 || removed.length > 0) {
      this.log.warn({ added, removed }, 'upstreams are fixed at start: restart the proxy to add or remove one');
    }
    this.config = next;
    for (const u of this.byLabel.values()) {
      const settings = upstreamSettings(next, u.name);
      if (settings !== undefined) u.pool.reconfigure(poolOptions(next, settings));
    }
  }

  /** Resolves when the upstream answers a query within timeoutMs. */
  async ping(upstream: Upstream, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([upstream.control.query('SELECT 1'), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops handing out servers (drain): idle ones close, busy ones finish. */
  close(): void {
    for (const u of this.byLabel.values()) u.pool.close();
  }

  /** Closes every server, busy ones included, and the control pools. */
  async destroy(): Promise<void> {
    for (const u of this.byLabel.values()) u.pool.destroy();
    await Promise.all([...this.byLabel.values()].map((u) => u.control.end().catch(() => undefined)));
  }

  private open(name: string, database: string | null): Upstream | null {
    const settings = upstreamSettings(this.config, name);
    if (settings === undefined) return null;
    const target = targetOf(name, settings, database ?? undefined);
    const label = routeLabel({ upstream: name, database });
    const log = this.log.child({ component: 'pool', upstream: label });
    const metrics = this.metrics;
    const events: PoolEvents = {
      backendConnected: (ok) => metrics.backendConnected(ok, label),
      backendReset: () => metrics.backendReset(),
      waitedForBackend: (seconds) => metrics.waitedForBackend(seconds),
    };
    const control = controlPool(target, log);
    const upstream: Upstream = {
      label,
      name,
      target,
      pool: new Pool({ ...target, name: label }, poolOptions(this.config, settings), log, events),
      control,
    };
    this.byLabel.set(label, upstream);
    return upstream;
  }
}
