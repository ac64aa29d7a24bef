// The tenant commands across upstreams: admin pools per upstream, and for `migrate` the registry's connection beside each.
import pg from 'pg';
import { DEFAULT_UPSTREAM, type Config } from '../config/schema.js';
import type { SqlRunner } from '../tenants/provision.js';
import { upstreamAdminConfig } from './upstream-admin.js';

/** A tenant's connection on its upstream, and where its migrations are recorded (the same one on default). */
export interface MigrateConnection {
  client: pg.PoolClient;
  registry: pg.PoolClient;
  release(broken?: Error): void;
}

/** Admin pools of `max` connections per upstream (its adminUrl; admin.url for default), opened on first use. */
export class AdminPools {
  private readonly pools = new Map<string, pg.Pool>();

  constructor(
    private readonly config: Config,
    private readonly max: number,
    private readonly applicationName: string,
  ) {}

  pool(upstream: string): pg.Pool {
    let pool = this.pools.get(upstream);
    if (pool === undefined) {
      pool = new pg.Pool({
        ...upstreamAdminConfig(this.config, upstream),
        application_name: this.applicationName,
        max: this.max,
      });
      pool.on('error', () => undefined);
      this.pools.set(upstream, pool);
    }
    return pool;
  }

  async end(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.end().catch(() => undefined)));
  }
}

/**
 * `migrate`'s connections: a worker holds at most one connection of default's pool at a time (its tenant's, or the
 * registry's beside another upstream's), so `max` workers never wait on each other.
 */
export class MigrateConnections {
  private readonly pools: AdminPools;

  constructor(config: Config, max: number) {
    this.pools = new AdminPools(config, max, 'pg-tenant-proxy migrate');
  }

  async acquire(upstream: string): Promise<MigrateConnection> {
    const client = await this.pools.pool(upstream).connect();
    if (upstream === DEFAULT_UPSTREAM) return { client, registry: client, release: (broken) => client.release(broken) };
    let registry: pg.PoolClient;
    try {
      registry = await this.pools.pool(DEFAULT_UPSTREAM).connect();
    } catch (err) {
      client.release();
      throw err;
    }
    return {
      client,
      registry,
      release(broken) {
        client.release(broken);
        registry.release(broken);
      },
    };
  }

  end(): Promise<void> {
    return this.pools.end();
  }
}

/**
 * Runs `work` inside a transaction on the tenant's upstream and, when that is another connection, one on the
 * registry. The upstream commits first: a migration is never recorded without having been applied. Should the
 * registry's commit then fail, the error says so (the next run would apply the migration again and fail on it).
 */
export async function inTransactions(
  conn: { client: SqlRunner; registry: SqlRunner },
  upstream: string,
  work: () => Promise<void>,
): Promise<void> {
  const { client, registry } = conn;
  const both = client !== registry;
  await client.query('BEGIN');
  try {
    if (both) await registry.query('BEGIN');
    await work();
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (both) await registry.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
  if (!both) return;
  try {
    await registry.query('COMMIT');
  } catch (err) {
    throw new Error(
      `applied on upstream "${upstream}" but not recorded in the registry: ${(err as Error).message}; record it by hand before the next migrate`,
      { cause: err },
    );
  }
}
