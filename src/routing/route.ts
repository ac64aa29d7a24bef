// A tenant's route as the registry records it: which upstream serves it, in which database, shared or dedicated.
import { DEFAULT_UPSTREAM, type Config } from '../config/schema.js';

export const Placement = {
  /** One of many tenant schemas in a database other tenants share. */
  Shared: 'shared',
  /** A database (or cluster) of its own: the enterprise tier. */
  Dedicated: 'dedicated',
} as const;
export type Placement = (typeof Placement)[keyof typeof Placement];
export const PLACEMENTS: readonly Placement[] = Object.values(Placement);

export interface TenantRoute {
  /** A name of the proxy's config: `default` (the `upstream` key) or one of `upstreams`. */
  upstream: string;
  /** null: the database of the upstream's url. */
  database: string | null;
  placement: Placement;
}

/** Where a tenant goes without a route of its own (and every tenant without the registry). */
export const DEFAULT_ROUTE: TenantRoute = Object.freeze({
  upstream: DEFAULT_UPSTREAM,
  database: null,
  placement: Placement.Shared,
});

export function sameRoute(a: TenantRoute, b: TenantRoute): boolean {
  return a.upstream === b.upstream && a.database === b.database && a.placement === b.placement;
}

/** How logs, `tenants route` and errors name where a tenant goes: `b`, or `b/dbname` for a database of its own. */
export function routeLabel(route: Pick<TenantRoute, 'upstream' | 'database'>): string {
  return route.database === null ? route.upstream : `${route.upstream}/${route.database}`;
}

/** The settings of the upstream called `name`, or undefined when this config has none by that name. */
export function upstreamSettings(config: Config, name: string): Config['upstream'] | undefined {
  if (name === DEFAULT_UPSTREAM) return config.upstream;
  return Object.hasOwn(config.upstreams, name) ? config.upstreams[name] : undefined;
}
