// At start, whether the upstream database holds the catalog filter this build expects; the guard refuses catalog
// statements with a hint naming the install command when it does not (never are they sent unfiltered).
import pg from 'pg';
import { catalogFilterVersion } from './install.js';
import { CATALOG_FILTER_VERSION, CATALOG_SCHEMA } from './surfaces.js';

/**
 * Null when the filter is installed at this version; else why not, for the refusal's message. Undefined when the
 * database could not be asked (the proxy starts anyway: a statement then fails in PostgreSQL, on the missing view).
 */
export async function catalogFilterProblem(upstream: {
  url: string;
  password?: string;
  connectTimeoutMs: number;
}): Promise<string | null | undefined> {
  const url = new URL(upstream.url);
  if (upstream.password !== undefined) url.password = encodeURIComponent(upstream.password);
  const client = new pg.Client({
    connectionString: url.toString(),
    connectionTimeoutMillis: upstream.connectTimeoutMs,
    application_name: 'pg-tenant-proxy catalog check',
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const version = await catalogFilterVersion(client);
    if (version === CATALOG_FILTER_VERSION) return null;
    return version === 0
      ? `the catalog filter (schema ${CATALOG_SCHEMA}) is not installed in database "${decodeURIComponent(url.pathname.slice(1))}"`
      : `the catalog filter in schema ${CATALOG_SCHEMA} is at version ${version}, this pg-tenant-proxy needs ${CATALOG_FILTER_VERSION}`;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}
