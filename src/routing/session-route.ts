// Which upstream a logged-in client's transactions go to, followed from the registry at each checkout.
import type { Pool } from '../backend/pool.js';
import type { ServerConn } from '../backend/server-conn.js';
import type { PreparedStatements } from '../frontend/prepared.js';
import { ProxyError } from '../protocol/errors.js';
import type { TenantRegistry } from '../tenants/registry.js';
import { routeLabel, type TenantRoute } from './route.js';
import type { Upstream, Upstreams } from './upstreams.js';

/**
 * The session's current upstream. Transactions are where a route can change hands: between them the client holds
 * no server (or only a parked one, given back to its old pool), so its next transaction simply checks out of the new
 * upstream's pool. A session in pool.mode session keeps its server, so it follows a new route when it reconnects.
 */
export class SessionRoute {
  private route: TenantRoute;

  constructor(
    private readonly tenantId: string,
    private upstream: Upstream,
    route: TenantRoute,
    private readonly upstreams: Upstreams,
    private readonly registry: TenantRegistry,
    private readonly schema: string,
  ) {
    this.route = route;
  }

  get pool(): Pool {
    return this.upstream.pool;
  }

  /**
   * Called before each checkout: when the registry now routes the tenant elsewhere, the server parked for this client
   * goes back to its old pool (returned: null) and the session moves. A route to an upstream this proxy lacks ends
   * the session (FATAL) rather than serve the tenant from where it no longer lives.
   */
  follow(parked: ServerConn | null, owner: object, prepared: PreparedStatements): ServerConn | null {
    const now = this.registry.route(this.tenantId);
    // One comparison on the hot path: the mirror keeps a record's route object until the record changes.
    if (now === null || now === this.route) return parked;
    this.route = now;
    const next = this.upstreams.resolve(now);
    if (next === null) throw ProxyError.unknownUpstream(this.tenantId, routeLabel(now));
    if (next === this.upstream) return parked;
    if (parked !== null) this.upstream.pool.release(parked, owner);
    this.upstream = next;
    prepared.useGeneration(next.pool.generations.of(this.schema));
    return null;
  }
}
