// What one of several worker processes runs with: its share of every upstream's server pool and of the client limit.
import { ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';

/** An even split of `total` over `count` parts, the remainder going to the first parts; never below 1 when total ≥ count. */
export function shareOf(total: number, index: number, count: number): number {
  return Math.floor(total / count) + (index < total % count ? 1 : 0);
}

/**
 * The config of worker `index` of `count`: the shares of every worker add up to the configured totals. The count is
 * the one the workers were started with; a reloaded config too small to give each of them a server and a client is
 * refused, as it would be at start.
 */
export function workerConfig(config: Config, index: number, count: number): Config {
  const totals: Array<[string, number]> = [
    ['upstream.poolSize', config.upstream.poolSize],
    ['listen.maxClients', config.listen.maxClients],
    ...Object.entries(config.upstreams).map(([name, u]): [string, number] => [
      `upstreams.${name}.poolSize`,
      u.poolSize,
    ]),
  ];
  for (const [key, total] of totals) {
    if (total < count) throw new ConfigError(`${total} cannot be shared by the ${count} running workers`, key);
  }
  // Every upstream's pool is split alike: PostgreSQL sees the configured total per upstream, whatever the count (per
  // database: a route naming a database of its own gets a pool of the upstream's size there too).
  const share = <U extends Config['upstream']>(u: U): U => ({
    ...u,
    poolSize: shareOf(u.poolSize, index, count),
    minIdle: shareOf(u.minIdle, index, count),
  });
  return {
    ...config,
    listen: { ...config.listen, maxClients: shareOf(config.listen.maxClients, index, count) },
    upstream: share(config.upstream),
    upstreams: Object.fromEntries(Object.entries(config.upstreams).map(([name, u]) => [name, share(u)])),
  };
}
