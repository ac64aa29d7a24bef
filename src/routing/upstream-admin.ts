// The tenant commands' privileged connection to each upstream: admin.url for default, upstreams.<name>.adminUrl else.
import pg from 'pg';
import { DEFAULT_UPSTREAM, type Config } from '../config/schema.js';
import { ensureCatalogFilter } from '../catalog/install.js';
import { adminClientConfig, connectAdmin, proxyRoleOf } from '../tenants/admin-connection.js';
import { TenantError } from '../tenants/tenant-error.js';
import { upstreamSettings } from './route.js';

/** The upstream names a config has, default first. */
export function upstreamNames(config: Config): string[] {
  return [DEFAULT_UPSTREAM, ...Object.keys(config.upstreams)];
}

/** Refuses a name the config does not have, naming the ones it does (TenantError invalid_argument, exit 2). */
export function checkUpstream(config: Config, name: string): void {
  if (upstreamSettings(config, name) !== undefined) return;
  throw new TenantError(
    'invalid_argument',
    `no upstream "${name}" in the configuration (configured: ${upstreamNames(config).join(', ')})`,
  );
}

/** The proxy's login role on that upstream (its url's user): what tenant schemas there are granted to. */
export function proxyRoleOn(config: Config, name: string): string {
  if (name === DEFAULT_UPSTREAM) return proxyRoleOf(config);
  checkUpstream(config, name);
  return decodeURIComponent(new URL(config.upstreams[name]!.url).username);
}

export function upstreamAdminConfig(config: Config, name: string): pg.ClientConfig {
  if (name === DEFAULT_UPSTREAM) return adminClientConfig(config);
  checkUpstream(config, name);
  const upstream = config.upstreams[name]!;
  if (upstream.adminUrl === undefined) {
    throw new TenantError(
      'not_configured',
      `upstreams.${name}.adminUrl is not set: the tenant commands need a privileged connection to upstream "${name}"`,
    );
  }
  const url = new URL(upstream.adminUrl);
  if (upstream.adminPassword !== undefined) url.password = encodeURIComponent(upstream.adminPassword);
  return {
    connectionString: url.toString(),
    application_name: 'pg-tenant-proxy tenants',
    connectionTimeoutMillis: upstream.connectTimeoutMs,
  };
}

/**
 * Connects as the upstream's admin URL. Throws TenantError: invalid_argument for an unknown name, not_configured
 * without its adminUrl, unreachable (naming the upstream) when it cannot be reached.
 */
export async function connectUpstreamAdmin(config: Config, name: string): Promise<pg.Client> {
  if (name === DEFAULT_UPSTREAM) return connectAdmin(config);
  const db = new pg.Client(upstreamAdminConfig(config, name));
  db.on('error', () => undefined);
  await db.connect().catch((err: unknown) => {
    const url = new URL(config.upstreams[name]!.adminUrl!);
    const where = `${decodeURIComponent(url.username)}@${url.hostname || 'localhost'}:${url.port || 5432}`;
    throw new TenantError(
      'unreachable',
      `cannot connect to upstream "${name}" as ${where} (upstreams.${name}.adminUrl): ${(err as Error).message}`,
      undefined,
      { cause: err },
    );
  });
  return db;
}

/**
 * Readies an upstream other than default for tenants: its proxy login role must exist and the catalog filter is
 * installed there (each database a tenant can be pinned in needs its own).
 */
export async function prepareUpstream(db: pg.Client, config: Config, name: string): Promise<void> {
  const proxyRole = proxyRoleOn(config, name);
  const { rows } = await db.query('SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1', [proxyRole]);
  if (rows.length === 0) {
    throw new TenantError(
      'conflict',
      `the proxy's login role "${proxyRole}" (upstreams.${name}.url) does not exist on upstream "${name}"; create it first`,
    );
  }
  await ensureCatalogFilter(db, config);
}

/** Runs `work` with a connection to the upstream's admin URL, closed however it ends. */
export async function withUpstreamAdmin<T>(
  config: Config,
  name: string,
  work: (db: pg.Client) => Promise<T>,
): Promise<T> {
  const db = await connectUpstreamAdmin(config, name);
  try {
    return await work(db);
  } finally {
    await db.end().catch(() => undefined);
  }
}

/**
 * For the verbs that do not act on other upstreams yet (delete, purge, export): a tenant elsewhere is refused rather
 * than have its schema looked for, or dropped and certified, on the wrong cluster.
 */
export function refuseOtherUpstream(verb: string, tenant: { id: string; upstream?: string | null }): void {
  const upstream = tenant.upstream ?? DEFAULT_UPSTREAM;
  if (upstream === DEFAULT_UPSTREAM) return;
  throw new TenantError(
    'conflict',
    `tenant "${tenant.id}" is on upstream "${upstream}"; ${verb} acts on the default upstream only so far (nothing was changed)`,
  );
}
