// The admin connection (admin.url): its client settings, connecting it, and the proxy's login role it provisions for.
import pg from 'pg';
import type { Config } from '../config/schema.js';
import { TenantError } from './tenant-error.js';

export function adminClientConfig(config: Config): pg.ClientConfig {
  if (config.admin.url === undefined) {
    throw new TenantError(
      'not_configured',
      'admin.url is not set: the tenant commands need a privileged connection of their own (admin.url, PGTP_ADMIN_URL)',
    );
  }
  const url = new URL(config.admin.url);
  // As upstream.password does for upstream.url: the URL's password, if any, is replaced.
  if (config.admin.password !== undefined) url.password = encodeURIComponent(config.admin.password);
  return {
    connectionString: url.toString(),
    application_name: 'pg-tenant-proxy tenants',
    connectionTimeoutMillis: config.upstream.connectTimeoutMs,
  };
}

/**
 * Connects as admin.url. Throws TenantError: not_configured without admin.url, unreachable (naming where it tried)
 * when the database cannot be reached.
 */
export async function connectAdmin(config: Config, applicationName?: string): Promise<pg.Client> {
  const db = new pg.Client({
    ...adminClientConfig(config),
    ...(applicationName !== undefined && { application_name: applicationName }),
  });
  // An error on an idle connection (server restart) surfaces on the next query; it must not crash the process.
  db.on('error', () => undefined);
  await db.connect().catch((err: unknown) => {
    throw unreachable(config, err);
  });
  return db;
}

function unreachable(config: Config, err: unknown): TenantError {
  const url = new URL(config.admin.url!);
  const where = `${decodeURIComponent(url.username)}@${url.hostname || 'localhost'}:${url.port || 5432}/${decodeURIComponent(url.pathname.slice(1))}`;
  const message = (err as Error).message || String((err as { code?: string }).code ?? err);
  return new TenantError(
    'unreachable',
    `cannot connect to the database as ${where} (admin.url): ${message}`,
    undefined,
    { cause: err },
  );
}

/** The proxy's login role (upstream.url's user): what tenant schemas are granted to and the registry is readable by. */
export function proxyRoleOf(config: Config): string {
  return decodeURIComponent(new URL(config.upstream.url).username);
}
