// `pg-tenant-proxy catalog install --config FILE`: installs or upgrades the catalog filter (src/catalog/install.ts).
import { parseArgs } from 'node:util';
import pg from 'pg';
import { installCatalogFilter } from '../catalog/install.js';
import { CATALOG_SCHEMA } from '../catalog/surfaces.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { DEFAULT_UPSTREAM } from '../config/schema.js';
import { upstreamAdminConfig, upstreamNames } from '../routing/upstream-admin.js';

const USAGE = `usage: pg-tenant-proxy catalog install --config FILE

Creates or upgrades the schema ${CATALOG_SCHEMA} (filtered views of pg_catalog and information_schema) in the
database of admin.url, and of every upstreams.<name>.adminUrl (each upstream's database needs its own), with
tenancy.sharedSchemas visible to every tenant. policy.catalogFilter needs it; the tenants commands install it too.
Run it again after a PostgreSQL major upgrade or a change of tenancy.sharedSchemas.
`;

export async function runCatalog(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, help: { type: 'boolean' } },
    allowPositionals: true,
  });
  if (values.help === true || positionals[0] !== 'install' || values.config === undefined) {
    process.stderr.write(USAGE);
    return values.help === true ? 0 : 2;
  }
  try {
    const config = loadConfig(values.config);
    // Upstreams without an adminUrl are left to `tenants create --upstream`, which installs it there.
    const targets = upstreamNames(config).filter(
      (name) => name === DEFAULT_UPSTREAM || config.upstreams[name]?.adminUrl !== undefined,
    );
    for (const name of targets) {
      const client = new pg.Client(upstreamAdminConfig(config, name));
      client.on('error', () => undefined);
      await client.connect();
      try {
        const { from, to, changed } = await installCatalogFilter(client, {
          sharedSchemas: config.tenancy.sharedSchemas,
        });
        const where = name === DEFAULT_UPSTREAM ? '' : `upstream ${name}: `;
        process.stdout.write(
          changed
            ? `${where}catalog filter installed in ${CATALOG_SCHEMA} (version ${from} → ${to})\n`
            : `${where}catalog filter already at version ${to}\n`,
        );
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    return 0;
  } catch (err) {
    process.stderr.write(`pg-tenant-proxy catalog install: ${(err as Error).message}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }
}
