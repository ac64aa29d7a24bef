// What one of several worker processes runs with: its share of the server pool and of the client limit.
import type { Config } from '../config/schema.js';

/** An even split of `total` over `count` parts, the remainder going to the first parts; never below 1 when total ≥ count. */
export function shareOf(total: number, index: number, count: number): number {
  return Math.floor(total / count) + (index < total % count ? 1 : 0);
}

/** The config of worker `index` of `count`: the shares of every worker add up to the configured totals. */
export function workerConfig(config: Config, index: number, count: number): Config {
  return {
    ...config,
    listen: { ...config.listen, maxClients: shareOf(config.listen.maxClients, index, count) },
    upstream: {
      ...config.upstream,
      poolSize: shareOf(config.upstream.poolSize, index, count),
      minIdle: shareOf(config.upstream.minIdle, index, count),
    },
  };
}
