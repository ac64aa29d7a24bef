// `pg-tenant-proxy catalog install --config FILE`: installs or upgrades the catalog filter (src/catalog/install.ts).
import { parseArgs } from 'node:util';
import pg from 'pg';
import { installCatalogFilter } from '../catalog/install.js';
import { CATALOG_SCHEMA } from '../catalog/surfaces.js';
import { ConfigError, loadConfig } from '../config/load.js';
import { adminClientConfig } from '../tenants/admin-connection.js';

const USAGE = `usage: pg-tenant-proxy catalog install --config FILE

Creates or upgrades the schema ${CATALOG_SCHEMA} (filtered views of pg_catalog and information_schema) in the
database of admin.url, with tenancy.sharedSchemas visible to every tenant. policy.catalogFilter needs it; the
tenants commands install it too. Run it again after a PostgreSQL major upgrade or a change of tenancy.sharedSchemas.
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
  let client: pg.Client;
  try {
    const config = loadConfig(values.config);
    client = new pg.Client(adminClientConfig(config));
    await client.connect();
    try {
      const { from, to, changed } = await installCatalogFilter(client, {
        sharedSchemas: config.tenancy.sharedSchemas,
      });
      process.stdout.write(
        changed
          ? `catalog filter installed in ${CATALOG_SCHEMA} (version ${from} → ${to})\n`
          : `catalog filter already at version ${to}\n`,
      );
      return 0;
    } finally {
      await client.end().catch(() => undefined);
    }
  } catch (err) {
    process.stderr.write(`pg-tenant-proxy catalog install: ${(err as Error).message}\n`);
    return err instanceof ConfigError ? 2 : 1;
  }
}
