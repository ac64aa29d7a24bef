// A client's login after its startup packet: the token verified, the tenant admitted, its startup settings judged.
import type { TenantIdentity } from '../auth/identity.js';
import { AuthFailure, type TenantTokenVerifier } from '../auth/tenant-token.js';
import type { Logger } from 'pino';
import type { SqlGuard } from '../guard/sql-guard.js';
import { SqlState } from '../protocol/codes.js';
import { ProxyError } from '../protocol/errors.js';
import { routeLabel } from '../routing/route.js';
import type { Upstream, Upstreams } from '../routing/upstreams.js';
import type { TenantRecord } from '../tenants/admission.js';
import type { TenantRegistry } from '../tenants/registry.js';
import { judgeStartupSettings, type ClientStartup } from './startup.js';

export interface LoginDeps {
  verifier: TenantTokenVerifier;
  registry: TenantRegistry;
  guard: SqlGuard;
  upstreams: Upstreams;
  log: Logger;
  /** policy.guard */
  guardOn: boolean;
}

export interface LoggedIn {
  identity: TenantIdentity;
  /** The client's startup settings in the server's spelling (see TenantRegistry.canonicalSettings). */
  settings: Map<string, string>;
  /** The upstream's ParameterStatus set, reported to the client at login. */
  defaults: ReadonlyMap<string, string>;
  /** What the registry records of the tenant (route, tier, limits), and the upstream it routes the tenant to. */
  record: TenantRecord;
  upstream: Upstream;
}

/**
 * Verifies the token and admits its tenant; throws AuthFailure (28P01/28000) or a ProxyError. `stillWanted` is asked
 * after each wait: a client that left meanwhile gets null.
 */
export async function login(
  deps: LoginDeps,
  startup: ClientStartup,
  token: string,
  stillWanted: () => boolean,
): Promise<LoggedIn | null> {
  if (token === '')
    throw new AuthFailure('malformed', 'empty password: the tenant token is the password', SqlState.INVALID_PASSWORD);
  const identity = await deps.verifier.verify(token);
  if (!stillWanted()) return null;
  const record = await deps.registry.admit(identity);
  const route = record.route;
  const upstream = deps.upstreams.resolve(route);
  if (upstream === null) {
    deps.log.error(
      { tenant: identity.tenantId, upstream: routeLabel(route) },
      "the registry routes this tenant to an upstream this proxy's config lacks",
    );
    throw ProxyError.unknownUpstream(identity.tenantId, routeLabel(route));
  }
  if (!identity.guardBypass && deps.guardOn) judgeStartupSettings(deps.guard, startup.settings, identity.schema);
  // Validated where the tenant's schema and role are: on its own upstream (default's through the registry's own
  // control connection, warm from admission).
  const elsewhere = upstream === deps.upstreams.default ? undefined : upstream;
  const settings = await deps.registry.canonicalSettings(startup.settings, identity.schema, identity.role, elsewhere);
  const defaults = await upstream.pool.parameterDefaults();
  if (!stillWanted()) return null;
  // A suspension that arrived during the awaits above found no session of this tenant to end: refuse here.
  const withdrawn = deps.registry.recheck(identity);
  if (withdrawn !== null) throw withdrawn;
  return { identity, settings, defaults, record, upstream };
}
